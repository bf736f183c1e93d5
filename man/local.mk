# man/: manual pages (groff man(7) macros), installed by `make install`.
dist_man_MANS = man/h5chunkd.8 man/h5chunkd.conf.5 man/h5chunk.1 man/h5chunkd-site-cache.1
