# docs/: user and operator documentation.
dist_doc_DATA += docs/api.md docs/architecture.md docs/operations.md docs/benchmarks.md \
	docs/python.md \
	docs/benchmarks.png
EXTRA_DIST += docs/benchmarks.json
