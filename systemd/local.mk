# systemd/: units for running h5chunkd as a service.
EXTRA_DIST += systemd/h5chunkd.service.in
systemdsystemunit_DATA = systemd/h5chunkd.service
dist_systemdsystemunit_DATA = systemd/h5chunkd.socket
CLEANFILES += systemd/h5chunkd.service
systemd/h5chunkd.service: $(srcdir)/systemd/h5chunkd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) systemd && sed -e 's|@bindir[@]|$(bindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
		$(srcdir)/systemd/h5chunkd.service.in > $@
