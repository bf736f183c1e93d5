# python/: the h5chunkd Python package (docs/python.md).  `make install` copies
# it into $(pythondir) with a minimal .dist-info, so that fsspec finds the
# "h5chunkd" protocol through its "fsspec.specs" entry point as it does after
# `pip install ./python`.  Its tests run in tests/integration/test_python.sh.
PY_PKG_FILES = python/h5chunkd/__init__.py python/h5chunkd/client.py \
	python/h5chunkd/errors.py python/h5chunkd/file.py python/h5chunkd/frames.py \
	python/h5chunkd/fs.py python/h5chunkd/_fsspec_chain.py python/h5chunkd/transport.py \
	python/h5chunkd/urls.py python/h5chunkd/zarrstore.py python/h5chunkd/zarrview.py
EXTRA_DIST += $(PY_PKG_FILES) python/pyproject.toml python/README.md \
	python/tests/test_offline.py python/tests/test_daemon.py

if HAVE_PYTHON
h5chunkd_pydir = $(pythondir)/h5chunkd
h5chunkd_py_PYTHON = $(PY_PKG_FILES)

PY_DIST_INFO = h5chunkd-$(VERSION).dist-info

install-data-hook: install-python-dist-info
install-python-dist-info:
	$(MKDIR_P) '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)'
	printf 'Metadata-Version: 2.1\nName: h5chunkd\nVersion: %s\nSummary: %s\n' \
	    '$(VERSION)' 'Read remote HDF5/NWB files through the local h5chunkd daemon' \
	    > '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/METADATA'
	printf '[fsspec.specs]\nh5chunkd = h5chunkd.fs:H5chunkdFileSystem\n' \
	    > '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/entry_points.txt'
	printf 'h5chunkd\n' > '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/top_level.txt'
	printf 'make\n' > '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/INSTALLER'

uninstall-hook: uninstall-python-dist-info
uninstall-python-dist-info:
	rm -f '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/METADATA' \
	    '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/entry_points.txt' \
	    '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/top_level.txt' \
	    '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)/INSTALLER'
	-rmdir '$(DESTDIR)$(pythondir)/$(PY_DIST_INFO)'
endif
