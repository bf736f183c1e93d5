def write(r, d): pass
