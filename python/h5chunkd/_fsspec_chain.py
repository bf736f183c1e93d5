"""_fsspec_chain.py - makes fsspec read "h5chunkd::https://..." as a chain.

fsspec splits a chained URL at "::" and takes a part for a protocol name
only when it holds nothing but letters a-z or contains "://" (its test for
"a protocol-like word"): "h5chunkd" has a digit, so "h5chunkd::https://x"
would open a local file named "h5chunkd".  "h5chunkd://::https://x" always
works.  This wraps fsspec.core._un_chain to rewrite a leading "h5chunkd::"
into that form; every other URL goes through untouched.  Installed by
`import h5chunkd`; skipped silently when fsspec's internals differ.
"""

PREFIX = "h5chunkd::"
CANONICAL = "h5chunkd://::"


def _rewrite(path):
    if isinstance(path, str) and path.startswith(PREFIX):
        return CANONICAL + path[len(PREFIX):]
    if isinstance(path, (list, tuple)):
        return type(path)(_rewrite(p) for p in path)
    return path


def install():
    try:
        import fsspec.core as core
    except ImportError:
        return False
    orig = getattr(core, "_un_chain", None)
    if orig is None or getattr(orig, "_h5chunkd", False):
        return orig is not None

    def _un_chain(path, kwargs):
        return orig(_rewrite(path), kwargs)

    _un_chain._h5chunkd = True
    _un_chain.__wrapped__ = orig
    core._un_chain = _un_chain
    return True
