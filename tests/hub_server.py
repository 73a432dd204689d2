"""A local Hugging Face Hub-compatible HTTP server for offline tests (standard library only).

It implements what the real clients (`huggingface_hub`, `transformers`, `peft`, `datasets`) call when they create a
repo, upload a commit and read files back: `POST /api/repos/create`, `POST /api/validate-yaml`,
`POST /api/{type}s/{id}/preupload/{rev}` (binary formats such as parquet/safetensors/png go through Git LFS "basic"
transfer: `POST /{id}.git/info/lfs/objects/batch` then `PUT` of the content; the rest is "regular", i.e. base64 in
the commit; no Xet), `POST /api/{type}s/{id}/commit/{rev}` (NDJSON), repo info (`GET /api/{type}s/{id}[/revision/{rev}]`),
`GET /api/{type}s/{id}/tree/{rev}[/{path}]`, `POST /api/{type}s/{id}/paths-info/{rev}`, and file resolution
(`HEAD`/`GET /[{type}s/]{id}/resolve/{rev}/{path}`, with `X-Repo-Commit`, `ETag`, `Content-Length` and ranges).

Repos live on disk under `root`: one folder per repo with `blobs/` (content-addressed by git SHA-1) and
`commits.json` (the history, newest last; each commit maps paths to blob ids). Clients reach it through
`HF_ENDPOINT=http://127.0.0.1:<port>` with `HF_HUB_DISABLE_XET=1`.

Test hooks: `server.fail_next_commits(n)` makes the next `n` commit requests fail with HTTP 500 (to test retries);
`server.commits(repo_id, repo_type)` returns a repo's history. Access, as the Hub answers it: repos created with
`private` are reported private (`server.private`); repos in `server.read_only` answer preupload and commit requests
with 403 (a token that only reads them); files of repos in `server.gated` answer 403 GatedRepo (no access granted).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
# Like the Hub's default .gitattributes: these go through LFS (datasets deletes its parquet shards once they are
# uploaded through LFS, before the commit, so "regular" mode cannot serve them)
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".pt", ".png", ".jpg", ".mp4", ".arrow", ".gz", ".zip")
_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}


def is_lfs(path: str) -> bool:
    return path.lower().endswith(LFS_SUFFIXES)


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob, which `huggingface_hub` compares with its local "oid" to skip unchanged files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class _Store:
    """Repos on disk; one lock serialises writes (commits are atomic, as on the Hub)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.repo_dir(repo_type, repo_id) / "commits.json").exists()

    def commits(self, repo_type: str, repo_id: str) -> list[dict]:
        return json.loads((self.repo_dir(repo_type, repo_id) / "commits.json").read_text())

    def _write_commits(self, repo_type: str, repo_id: str, commits: list[dict]) -> None:
        path = self.repo_dir(repo_type, repo_id) / "commits.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(commits, indent=1))
        tmp.replace(path)

    def create(self, repo_type: str, repo_id: str) -> bool:
        with self.lock:
            if self.exists(repo_type, repo_id):
                return False
            folder = self.repo_dir(repo_type, repo_id)
            (folder / "blobs").mkdir(parents=True, exist_ok=True)
            self._write_commits(repo_type, repo_id, [self._commit_record(None, {}, "initial commit")])
            return True

    @staticmethod
    def _commit_record(parent: str | None, files: dict[str, str], title: str) -> dict:
        payload = json.dumps({"parent": parent, "files": files, "title": title}, sort_keys=True).encode()
        return {
            "id": hashlib.sha1(payload + str(datetime.datetime.now().timestamp()).encode()).hexdigest(),
            "parent": parent,
            "title": title,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "files": files,
        }

    def resolve(self, repo_type: str, repo_id: str, revision: str) -> dict | None:
        commits = self.commits(repo_type, repo_id)
        if revision in ("main", "HEAD", None, ""):
            return commits[-1]
        for commit in commits:
            if commit["id"] == revision:
                return commit
        return None

    def lfs_path(self, sha256: str) -> Path:
        return self.root / "lfs" / sha256

    def put_lfs(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        self.lfs_path(sha256).parent.mkdir(parents=True, exist_ok=True)
        self.lfs_path(sha256).write_bytes(content)
        return sha256

    def blob(self, repo_type: str, repo_id: str, blob_id: str) -> bytes:
        return (self.repo_dir(repo_type, repo_id) / "blobs" / blob_id).read_bytes()

    def commit(self, repo_type: str, repo_id: str, title: str, adds: dict[str, bytes], deletes: list[str]) -> dict:
        with self.lock:
            commits = self.commits(repo_type, repo_id)
            files = dict(commits[-1]["files"])
            for path in deletes:
                prefix = path.rstrip("/") + "/"
                for existing in list(files):
                    if existing == path or existing.startswith(prefix):
                        del files[existing]
            for path, content in adds.items():
                blob_id = git_blob_sha1(content)
                (self.repo_dir(repo_type, repo_id) / "blobs" / blob_id).write_bytes(content)
                files[path] = blob_id
            record = self._commit_record(commits[-1]["id"], files, title)
            commits.append(record)
            self._write_commits(repo_type, repo_id, commits)
            return record


class HubServer:
    """Runs the server on 127.0.0.1 on a free port in a background thread. Use as a context manager."""

    def __init__(self, root: str | Path, user: str = "tester"):
        self.store = _Store(Path(root))
        self.user = user
        self._fail_commits = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.private: set[str] = set()  # repo ids created private
        self.read_only: set[str] = set()  # repo ids the token reads but cannot write
        self.gated: set[str] = set()  # repo ids whose files the token has no access to
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next_commits(self, count: int = 1) -> None:
        self._fail_commits = count

    def commits(self, repo_id: str, repo_type: str = "model") -> list[dict]:
        return self.store.commits(repo_type, repo_id)

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        head = self.store.commits(repo_type, repo_id)[-1]
        return {path: self.store.blob(repo_type, repo_id, blob) for path, blob in head["files"].items()}


def point_clients_at(hub: HubServer, tmp_path: Path, monkeypatch) -> HubServer:
    """This process's Hub clients (huggingface_hub, and what builds on it) pointed at `hub`, with a fresh cache under
    `tmp_path` and a token; `monkeypatch` undoes it after the test."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
    # file downloads build their URL from this template, made from HF_ENDPOINT at import
    template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_local_test_token")
    return hub


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    # --- responses --------------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None):
        # `huggingface_hub.utils.hf_raise_for_status` maps X-Error-Code to RepositoryNotFoundError, etc.
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, status, headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # --- routing ----------------------------------------------------------------------------------------------------
    def do_HEAD(self):  # noqa: N802
        self._route()

    def do_GET(self):  # noqa: N802
        self._route()

    def do_POST(self):  # noqa: N802
        self._route()

    def do_PUT(self):  # noqa: N802
        self._route()

    def _route(self):
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.hub.requests.append((self.command, path))
        try:
            self._dispatch(path, query)
        except Exception as error:  # a server bug must show up as an HTTP error in the client, not a hang
            self._error(500, f"{type(error).__name__}: {error}")

    def _dispatch(self, path: str, query: dict):
        method = self.command
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            self._body()
            return self._json({"errors": [], "warnings": []})
        if path in ("/api/whoami-v2", "/api/whoami"):
            return self._json({"type": "user", "name": self.hub.user, "auth": {"accessToken": {"role": "write"}}})
        match = re.fullmatch(r"/(?:(datasets|spaces)/)?(.+?)\.git/info/lfs/objects/batch", path)
        if match and method == "POST":
            return self._lfs_batch()
        match = re.fullmatch(r"/_lfs/([0-9a-f]{64})", path)
        if match and method == "PUT":
            return self._lfs_put(match[1])
        match = re.fullmatch(r"/api/(models|datasets|spaces)/(.+?)/(preupload|commit|paths-info)/([^/]+)", path)
        if match and method == "POST":
            repo_type, repo_id, action, revision = _PLURAL[match[1]], match[2], match[3], match[4]
            if not self._check_repo(repo_type, repo_id):
                return None
            if repo_id in self.hub.read_only and action != "paths-info":
                self._body()
                return self._error(403, f"You don't have the rights to create a commit on {repo_id}")
            return getattr(self, "_" + action.replace("-", "_"))(repo_type, repo_id, revision)
        match = re.fullmatch(r"/api/(models|datasets|spaces)/(.+?)/tree/([^/]+)(?:/(.*))?", path)
        if match and method in ("GET", "HEAD"):
            repo_type, repo_id = _PLURAL[match[1]], match[2]
            if not self._check_repo(repo_type, repo_id):
                return None
            return self._tree(repo_type, repo_id, match[3], (match[4] or "").strip("/"), query)
        match = re.fullmatch(r"/api/(models|datasets|spaces)/(.+?)(?:/revision/([^/]+))?", path)
        if match and method in ("GET", "HEAD"):
            repo_type, repo_id = _PLURAL[match[1]], match[2]
            if not self._check_repo(repo_type, repo_id):
                return None
            return self._repo_info(repo_type, repo_id, match[3] or "main")
        match = re.fullmatch(r"/(?:(datasets|spaces)/)?(.+?)/resolve/([^/]+)/(.+)", path)
        if match and method in ("GET", "HEAD"):
            repo_type = _PLURAL[match[1]] if match[1] else "model"
            if not self._check_repo(repo_type, match[2]):
                return None
            if match[2] in self.hub.gated:
                visit = f"Visit {self.hub.endpoint}/{match[2]} to ask for access."
                return self._error(403, f"Access to model {match[2]} is restricted. {visit}", "GatedRepo")
            return self._resolve(repo_type, match[2], match[3], match[4])
        return self._error(404, f"local hub: no route for {method} {path}")

    def _check_repo(self, repo_type: str, repo_id: str) -> bool:
        if self.hub.store.exists(repo_type, repo_id):
            return True
        self._error(404, f"Repository {repo_type}/{repo_id} not found", "RepoNotFound")
        return False

    def _commit_or_error(self, repo_type: str, repo_id: str, revision: str) -> dict | None:
        commit = self.hub.store.resolve(repo_type, repo_id, revision)
        if commit is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # --- endpoints --------------------------------------------------------------------------------------------------
    def _create_repo(self):
        payload = json.loads(self._body() or b"{}")
        repo_type = payload.get("type") or "model"
        name, organization = payload["name"], payload.get("organization")
        repo_id = f"{organization or self.hub.user}/{name}" if "/" not in name else name
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.endpoint}/{prefix}{repo_id}"
        if not self.hub.store.create(repo_type, repo_id):
            return self._json({"error": "You already created this repo", "url": url}, 409)
        if payload.get("private") or payload.get("visibility") == "private":  # older / newer clients
            self.hub.private.add(repo_id)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        payload = json.loads(self._body())
        commit = self._commit_or_error(repo_type, repo_id, revision)
        if commit is None:
            return None
        files = []
        for item in payload["files"]:
            path, blob_id = item["path"], commit["files"].get(item["path"])
            oid = blob_id
            if blob_id is not None and is_lfs(path):
                # for LFS files the client compares the content's sha256
                oid = hashlib.sha256(self.hub.store.blob(repo_type, repo_id, blob_id)).hexdigest()
            mode = "lfs" if is_lfs(path) and item.get("size", 1) > 0 else "regular"
            files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return self._json({"files": files, "commitOid": commit["id"]})

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if self.hub._fail_commits > 0:
            self.hub._fail_commits -= 1
            return self._error(500, "local hub: commit failed on purpose (fail_next_commits)")
        head = self.hub.store.resolve(repo_type, repo_id, "main")
        title, adds, deletes = "", {}, []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                title = value.get("summary", "")
                parent = value.get("parentCommit")
                if parent and parent != head["id"]:
                    return self._error(412, f"parentCommit {parent} is not the head {head['id']}")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    return self._error(400, f"unsupported encoding {value.get('encoding')}")
                adds[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                lfs_path = self.hub.store.lfs_path(value["oid"])
                if not lfs_path.exists():
                    return self._error(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                adds[value["path"]] = lfs_path.read_bytes()
            elif key in ("deletedFile", "deletedFolder"):
                deletes.append(value["path"])
            else:
                return self._error(400, f"local hub: unsupported commit operation {key!r} (no LFS/Xet here)")
        record = self.hub.store.commit(repo_type, repo_id, title, adds, deletes)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return self._json(
            {
                "commitUrl": f"{self.hub.endpoint}/{prefix}{repo_id}/commit/{record['id']}",
                "commitOid": record["id"],
                "success": True,
                "pullRequestUrl": None,
            }
        )

    def _lfs_batch(self):
        payload = json.loads(self._body())
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if not self.hub.store.lfs_path(obj["oid"]).exists():  # no "actions": the client skips the upload
                entry["actions"] = {"upload": {"href": f"{self.hub.endpoint}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        return self._json({"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str):
        content = self._body()
        if hashlib.sha256(content).hexdigest() != oid:
            return self._error(400, f"LFS upload does not match its oid {oid}")
        self.hub.store.put_lfs(content)
        return self._json({})

    def _entries(self, repo_type: str, repo_id: str, commit: dict) -> dict[str, dict]:
        """Every file and folder of a commit, as the tree API describes them."""
        entries: dict[str, dict] = {}
        last_commit = {"id": commit["id"], "title": commit["title"], "date": commit["date"]}
        for path, blob_id in commit["files"].items():
            size = (self.hub.store.repo_dir(repo_type, repo_id) / "blobs" / blob_id).stat().st_size
            entries[path] = {"type": "file", "path": path, "oid": blob_id, "size": size, "lastCommit": last_commit}
            if is_lfs(path):
                sha256 = hashlib.sha256(self.hub.store.blob(repo_type, repo_id, blob_id)).hexdigest()
                entries[path]["lfs"] = {"oid": sha256, "size": size, "pointerSize": 134}
            parts = path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                oid = hashlib.sha1(f"{commit['id']}:{folder}".encode()).hexdigest()
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": oid, "size": 0})
        return entries

    def _tree(self, repo_type: str, repo_id: str, revision: str, folder: str, query: dict):
        commit = self._commit_or_error(repo_type, repo_id, revision)
        if commit is None:
            return None
        entries = self._entries(repo_type, repo_id, commit)
        if folder and folder not in entries:
            return self._error(404, f"{folder} does not exist on {revision}", "EntryNotFound")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = folder + "/" if folder else ""
        listed = [
            entry
            for path, entry in sorted(entries.items())
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])
        ]
        return self._json(listed)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str):
        body = self._body()
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        commit = self._commit_or_error(repo_type, repo_id, revision)
        if commit is None:
            return None
        entries = self._entries(repo_type, repo_id, commit)
        return self._json([entries[path] for path in paths if path in entries])

    def _repo_info(self, repo_type: str, repo_id: str, revision: str):
        commit = self._commit_or_error(repo_type, repo_id, revision)
        if commit is None:
            return None
        info = {
            "id": repo_id,
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "author": repo_id.split("/")[0],
            "sha": commit["id"],
            "lastModified": commit["date"],
            "createdAt": self.hub.store.commits(repo_type, repo_id)[0]["date"],
            "private": repo_id in self.hub.private,
            "gated": "manual" if repo_id in self.hub.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [{"rfilename": path} for path in sorted(commit["files"])],
        }
        if repo_type == "space":
            info.update(sdk="gradio", runtime={"stage": "BUILDING", "hardware": {"current": None, "requested": None}})
        return self._json(info)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str):
        commit = self._commit_or_error(repo_type, repo_id, revision)
        if commit is None:
            return None
        blob_id = commit["files"].get(filename)
        if blob_id is None:
            return self._error(404, f"Entry not found: {filename} in {repo_id}@{revision}", "EntryNotFound")
        content = self.hub.store.blob(repo_type, repo_id, blob_id)
        etag = hashlib.sha256(content).hexdigest() if is_lfs(filename) else blob_id
        headers = {"X-Repo-Commit": commit["id"], "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if match:
                start = int(match[1]) if match[1] else max(0, len(content) - int(match[2]))
                end = int(match[2]) if match[1] and match[2] else len(content) - 1
                end = min(end, len(content) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                return self._send(206, content[start : end + 1], headers, "application/octet-stream")
        return self._send(200, content, headers, "application/octet-stream")
