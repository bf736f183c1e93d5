# conf/: the documented configuration file.
h5chunkdconfdir = $(sysconfdir)/h5chunkd
dist_h5chunkdconf_DATA = conf/h5chunkd.conf
