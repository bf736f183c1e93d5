#!/usr/bin/python3
"""fake_dandi.py - a loopback stand-in for the DANDI Archive and its S3
bucket, for tests of dandi://, asset ids, resolve-once and presigned URLs.

Usage: fake_dandi.py --root DIR --port-file FILE [--expires SECONDS]

Two HTTP servers on 127.0.0.1 (free ports, written to FILE as
"API_PORT ORIGIN_PORT"):

The API, shaped like the DANDI REST API (paginated like the real one):
  GET /api/dandisets/{id}/                         the Dandiset
  GET /api/dandisets/{id}/versions/                its versions (draft)
  GET /api/dandisets/{id}/versions/{v}/assets/?path=P[&page=N]
        assets whose path starts with P, two per page, with "next" links
  GET /api/assets/{asset_id}/                      the asset's metadata
  GET /api/assets/{asset_id}/download/             302 to the blob:
        public Dandiset 000001: an unsigned /blobs/NAME URL with a
        response-content-disposition parameter, as the real archive sends;
        embargoed Dandiset 000002: a presigned /private/NAME URL valid for
        --expires seconds, and only with "Authorization: token tokenA"
        (401 without a token, 403 with another)
  GET /_sign?path=/private/NAME[&date=YYYYMMDDTHHMMSSZ][&expires=S][&forge=1]
        a presigned origin URL, for tests to craft good, expired, forged ones
  GET /_counts                                     what both servers answered
  GET /_rotate                                     a new signing key: every URL signed
                                                   so far is refused from now on

The origin, shaped like S3: single byte ranges (206, Content-Range,
ETag), 416 past the end, never HEAD-only tricks:
  /blobs/NAME     public
  /moved/NAME     302 to /blobs/NAME (a plain landing URL)
  /moved-signed/S/NAME   302 to a /private/NAME URL presigned for S seconds
  /private/NAME   needs X-Amz-Date, X-Amz-Expires and X-Amz-Signature =
                  HMAC-SHA256(secret, path + date + expires), not expired;
                  else 403 with an S3-like XML body.

Assets: every regular file NAME in --root is the asset sub-01/NAME of
Dandiset 000001 (public) and, when NAME starts with "embargo", of 000002
(embargoed) instead.  Asset ids are uuid5 of the Dandiset and NAME.
"""
import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = b"fake-dandi-secret"
TOKEN = "tokenA"
PAGE = 2
NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")

lock = threading.Lock()
counts = {"api": {}, "origin": {}}


def count(server, key):
    with lock:
        counts[server][key] = counts[server].get(key, 0) + 1


def amz_now(offset=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return t.strftime("%Y%m%dT%H%M%SZ")


def signature(path, date, expires):
    msg = (path + "\n" + date + "\n" + str(expires)).encode()
    with lock:
        key = SECRET
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def signed_url(origin, path, date=None, expires=None, forge=False):
    date = date or amz_now()
    expires = ARGS.expires if expires is None else int(expires)
    sig = signature(path, date, expires)
    if forge:
        sig = "f" * len(sig)
    q = urllib.parse.urlencode({
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "FAKE/20240101/us-east-1/s3",
        "X-Amz-Date": date, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": sig})
    return "%s%s?%s" % (origin, path, q)


def assets():
    out = []
    for name in sorted(os.listdir(ARGS.root)):
        full = os.path.join(ARGS.root, name)
        if not os.path.isfile(full):
            continue
        ds = "000002" if name.startswith("embargo") else "000001"
        out.append({
            "asset_id": str(uuid.uuid5(NS, ds + "/" + name)),
            "blob": str(uuid.uuid5(NS, "blob/" + name)),
            "zarr": None, "path": "sub-01/" + name, "size": os.path.getsize(full),
            "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z",
            "_dandiset": ds, "_name": name,
        })
    return out


def public(asset):
    return {k: v for k, v in asset.items() if not k.startswith("_")}


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("api: " + fmt % args + "\n")

    def send_json(self, status, doc, headers=()):
        body = (json.dumps(doc) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def authorized(self, dandiset):
        """None when allowed, else the status to answer."""
        if dandiset != "000002":
            return None
        auth = self.headers.get("Authorization")
        if auth is None:
            return 401
        return None if auth == "token " + TOKEN else 403

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        origin = "http://127.0.0.1:%d" % ORIGIN_PORT
        api = "http://127.0.0.1:%d/api" % API_PORT
        if url.path == "/_counts":
            with lock:
                return self.send_json(200, counts)
        if url.path == "/_rotate":
            global SECRET
            with lock:
                SECRET = SECRET + b"+"
            return self.send_json(200, {"rotated": True})
        if url.path == "/_sign":
            return self.send_json(200, {"url": signed_url(
                origin, q["path"][0], q.get("date", [None])[0], q.get("expires", [None])[0],
                q.get("forge", ["0"])[0] == "1")})
        m = re.fullmatch(r"/api/dandisets/(\d{6})/versions/([^/]+)/assets/", url.path)
        if m:
            count("api", "assets")
            ds, version = m.group(1), m.group(2)
            denied = self.authorized(ds)
            if denied:
                return self.send_json(denied, {"detail": "Authentication credentials were not provided."})
            if version != "draft":
                return self.send_json(404, {"detail": "Not found."})
            prefix = q.get("path", [""])[0]
            found = [public(a) for a in assets() if a["_dandiset"] == ds and a["path"].startswith(prefix)]
            page = int(q.get("page", ["1"])[0])
            chunk = found[(page - 1) * PAGE: page * PAGE]
            nxt = None
            if page * PAGE < len(found):
                nxt = "%s/dandisets/%s/versions/%s/assets/?%s" % (
                    api, ds, version, urllib.parse.urlencode({"path": prefix, "page": page + 1}))
            return self.send_json(200, {"count": len(found), "next": nxt,
                                        "previous": None, "results": chunk})
        m = re.fullmatch(r"/api/assets/([0-9a-f-]{36})/(download/)?", url.path)
        if m:
            hit = [a for a in assets() if a["asset_id"] == m.group(1)]
            if not hit:
                count("api", "unknown_asset")
                return self.send_json(404, {"detail": "Not found."})
            a = hit[0]
            denied = self.authorized(a["_dandiset"])
            if m.group(2):
                count("api", "download")
                if denied:
                    return self.send_json(denied, {"detail": "denied"})
                if a["_dandiset"] == "000002":
                    location = signed_url(origin, "/private/" + a["_name"])
                else:  # like the real archive: the file name in a header override
                    location = origin + "/blobs/" + a["_name"] + "?" + urllib.parse.urlencode(
                        {"response-content-disposition": 'attachment; filename="%s"' % a["_name"]})
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            count("api", "asset")
            if denied:
                return self.send_json(denied, {"detail": "denied"})
            return self.send_json(200, {"id": "dandiasset:" + a["asset_id"],
                                        "path": a["path"], "contentSize": a["size"],
                                        "contentUrl": ["%s/assets/%s/download/" % (api, a["asset_id"])]})
        m = re.fullmatch(r"/api/dandisets/(\d{6})/(versions/)?", url.path)
        if m:
            count("api", "dandiset")
            denied = self.authorized(m.group(1))
            if denied:
                return self.send_json(denied, {"detail": "denied"})
            version = {"version": "draft", "name": "fake", "asset_count": len(assets())}
            if m.group(2):
                return self.send_json(200, {"count": 1, "next": None, "previous": None,
                                            "results": [version]})
            return self.send_json(200, {"identifier": m.group(1), "draft_version": version,
                                        "embargo_status": "EMBARGOED" if m.group(1) == "000002" else "OPEN"})
        count("api", "other")
        return self.send_json(404, {"detail": "Not found."})


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("origin: " + fmt % args + "\n")

    def refuse(self, status, code):
        body = ("<?xml version=\"1.0\"?><Error><Code>%s</Code></Error>" % code).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def check_signature(self, path, q):
        try:
            date, expires, sig = q["X-Amz-Date"][0], int(q["X-Amz-Expires"][0]), q["X-Amz-Signature"][0]
            start = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except (KeyError, ValueError):
            return "AccessDenied"
        if not hmac.compare_digest(sig, signature(path, date, expires)):
            return "SignatureDoesNotMatch"
        if time.time() > start + expires:
            return "AccessDenied"  # S3: "Request has expired"
        return None

    def do_HEAD(self):
        count("origin", "HEAD")
        self.refuse(403, "HeadNotAllowedOnPresignedURLs")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        m = re.fullmatch(r"/moved/([^/]+)|/moved-signed/(\d+)/([^/]+)", url.path)
        if m:
            origin = "http://127.0.0.1:%d" % ORIGIN_PORT
            if m.group(1):
                count("origin", "moved")
                location = origin + "/blobs/" + m.group(1)
            else:
                count("origin", "moved-signed")
                location = signed_url(origin, "/private/" + m.group(3), expires=m.group(2))
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        m = re.fullmatch(r"/(blobs|private)/([^/]+)", url.path)
        if not m or not os.path.isfile(os.path.join(ARGS.root, m.group(2))):
            count("origin", "404")
            return self.refuse(404, "NoSuchKey")
        if m.group(1) == "private" or m.group(2).startswith("embargo"):
            why = self.check_signature(url.path, q) if m.group(1) == "private" else "AccessDenied"
            if why:
                count("origin", "403 " + url.path)
                return self.refuse(403, why)
        count("origin", url.path)
        with open(os.path.join(ARGS.root, m.group(2)), "rb") as f:
            data = f.read()
        size = len(data)
        rng = self.headers.get("Range")
        status, first, last = 200, 0, size - 1
        if rng:
            r = re.fullmatch(r"bytes=(\d*)-(\d*)", rng)
            if not r or (r.group(1) == "" and r.group(2) == ""):
                return self.refuse(400, "InvalidRange")
            if r.group(1) == "":
                first, last = max(0, size - int(r.group(2))), size - 1
            else:
                first = int(r.group(1))
                last = min(size - 1, int(r.group(2))) if r.group(2) else size - 1
            if first >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            status = 206
        body = data[first:last + 1]
        self.send_response(status)
        self.send_header("ETag", '"%s"' % hashlib.md5(data).hexdigest())
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with lock:
            counts["origin"]["bytes"] = counts["origin"].get("bytes", 0) + len(body)
        return None


def main():
    global ARGS, API_PORT, ORIGIN_PORT
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--expires", type=int, default=3600)
    ARGS = p.parse_args()
    api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    api.daemon_threads = origin.daemon_threads = True
    API_PORT, ORIGIN_PORT = api.server_address[1], origin.server_address[1]
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (API_PORT, ORIGIN_PORT))
    os.rename(tmp, ARGS.port_file)
    api.serve_forever()


if __name__ == "__main__":
    main()
