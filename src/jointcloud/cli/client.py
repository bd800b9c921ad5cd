"""A synchronous httpx client of the JCS v1 API (``docs/jcs-v1.md``).

Every JSON answer is unwrapped from its envelope; a failure becomes a
``CliError`` carrying the server's code and message. Uploads stream file
objects through httpx's multipart encoder; downloads stream into a callback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast
from urllib.parse import quote

import httpx

from jointcloud.cli.common import CliConfig, CliError, GlobalOptions, resolve_config

JsonObj = dict[str, Any]

DOWNLOAD_CHUNK = 1024 * 1024


class FileWindow:
    """Bytes ``[offset, offset + length)`` of a local file, read the way
    httpx's multipart encoder reads (``seek(0)`` then ``read(n)`` until empty),
    reporting every chunk to ``on_read``. The file is opened on the first read
    and closed at its end, so a batch of many files holds few descriptors."""

    def __init__(
        self,
        path: Path,
        on_read: Callable[[int], None],
        offset: int = 0,
        length: int | None = None,
        whole_size: int | None = None,
    ) -> None:
        self.path = path
        self.name = path.name
        self._on_read = on_read
        self._start = offset
        self._len = path.stat().st_size - offset if length is None else length
        self._whole_size = whole_size
        self._pos = 0
        self._file: IO[bytes] | None = None

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = self.path.open("rb")
            self._file.seek(self._start + self._pos)
        return self._file

    def read(self, n: int = -1) -> bytes:
        remaining = self._len - self._pos
        if remaining <= 0:
            self._check_size()
            self.close()
            return b""
        want = remaining if n < 0 else min(n, remaining)
        data = self._open().read(want)
        if not data:
            raise OSError(f"{self.path} became shorter while it was being uploaded")
        self._pos += len(data)
        self._on_read(len(data))
        return data

    def _check_size(self) -> None:
        """A file that grew (a log appended to) while it was read was stored
        as its first ``whole_size`` bytes, and the command said nothing
        (found by review): the request fails instead, so nothing torn is
        committed. A shrunk file fails in ``read``."""
        if self._file is None or self._whole_size is None:
            return
        now = os.fstat(self._file.fileno()).st_size
        if now != self._whole_size:
            raise OSError(
                f"{self.path} changed size while it was being uploaded "
                f"({self._whole_size} bytes, now {now}): upload it again once it is still"
            )

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._len}[whence]
        self._pos = max(0, min(base + pos, self._len))
        if self._file is not None:
            self._file.seek(self._start + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _envelope_error(resp: httpx.Response) -> CliError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str) and body["code"] != "OK":
        return CliError(body["code"], str(body.get("message") or f"HTTP {resp.status_code}"))
    snippet = resp.text[:200].strip() if resp.content else ""
    return CliError(
        "BadResponse",
        f"HTTP {resp.status_code} from {resp.request.url.path} without a JCS answer"
        + (f": {snippet}" if snippet else ""),
    )


def unwrap(resp: httpx.Response) -> Any:
    """The envelope's ``data``, or a ``CliError`` with the server's code."""
    try:
        body = resp.json()
    except ValueError:
        raise _envelope_error(resp) from None
    if not isinstance(body, dict) or "code" not in body:
        raise _envelope_error(resp)
    if body["code"] != "OK":
        raise CliError(str(body["code"]), str(body.get("message") or ""))
    return body.get("data")


class JcsClient:
    def __init__(self, config: CliConfig, *, timeout: float = 300.0) -> None:
        self.endpoint = config.endpoint
        self.http = httpx.Client(
            base_url=config.endpoint,
            headers={"Authorization": f"Bearer {config.api_key}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=False,
            # A plain-http endpoint never uses TLS (and redirects are not
            # followed), so skip loading the CA bundle: ~80 ms per command.
            verify=config.endpoint.startswith("https://"),
        )

    def __enter__(self) -> JcsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- plumbing ----------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.TransportError) -> CliError:
        if isinstance(exc, httpx.ConnectError):
            return CliError(
                "ConnectionFailed", f"cannot reach {self.endpoint} (is `jcs serve` running?): {exc}"
            )
        if isinstance(exc, httpx.TimeoutException):
            return CliError("ConnectionFailed", f"{self.endpoint} did not answer in time")
        return CliError("ConnectionFailed", f"connection to {self.endpoint} failed: {exc}")

    def get(self, url: str, /, **params: Any) -> Any:
        clean = {k: _param(v) for k, v in params.items() if v is not None}
        return unwrap(self._send("GET", url, params=clean))

    def post(self, url: str, body: JsonObj) -> Any:
        return unwrap(self._send("POST", url, json=body))

    # -- user spaces -------------------------------------------------------

    def list_spaces(self) -> list[JsonObj]:
        return cast(list[JsonObj], self.get("/v1/userSpace/list")["userSpaces"])

    def create_space(
        self,
        name: str,
        storage: JsonObj,
        credential: JsonObj | None = None,
        root_path: str | None = None,
    ) -> JsonObj:
        body: JsonObj = {"name": name, "storage": storage}
        if credential is not None:
            body["credential"] = credential
        if root_path is not None:
            body["rootPath"] = root_path
        return cast(JsonObj, self.post("/v1/userSpace/create", body)["userSpace"])

    def test_space(self, space_id: int) -> float:
        return float(self.post("/v1/userSpace/test", {"userSpaceID": space_id})["latencyMs"])

    def delete_space(self, space_id: int) -> None:
        self.post("/v1/userSpace/delete", {"userSpaceID": space_id})

    def drain_space(self, space_id: int) -> JsonObj:
        return cast(
            JsonObj, self.post("/v1/userSpace/drain", {"userSpaceID": space_id})["userSpace"]
        )

    def update_space(self, space_id: int, **changes: Any) -> JsonObj:
        body: JsonObj = {"userSpaceID": space_id, **changes}
        return cast(JsonObj, self.post("/v1/userSpace/update", body)["userSpace"])

    def find_space(self, name_or_id: str) -> JsonObj:
        """By name first, then by numeric id."""
        spaces = self.list_spaces()
        for s in spaces:
            if s["name"] == name_or_id:
                return s
        if name_or_id.isdigit():
            for s in spaces:
                if s["userSpaceID"] == int(name_or_id):
                    return s
        raise CliError("DataNotFound", f"no user space named or numbered {name_or_id!r}")

    # -- buckets and packages ----------------------------------------------

    def list_buckets(self) -> list[JsonObj]:
        return cast(list[JsonObj], self.get("/v1/bucket/listAll")["buckets"])

    def bucket(self, name: str) -> JsonObj:
        return cast(JsonObj, self.get("/v1/bucket/getByName", name=name)["bucket"])

    def create_bucket(self, name: str, redundancy: JsonObj | None = None) -> JsonObj:
        body: JsonObj = {"name": name}
        if redundancy is not None:
            body["redundancy"] = redundancy
        return cast(JsonObj, self.post("/v1/bucket/create", body)["bucket"])

    def set_bucket_redundancy(self, bucket_id: int, redundancy: JsonObj | None) -> JsonObj:
        body: JsonObj = {"bucketID": bucket_id, "redundancy": redundancy}
        return cast(JsonObj, self.post("/v1/bucket/update", body)["bucket"])

    def delete_bucket(self, bucket_id: int) -> None:
        self.post("/v1/bucket/delete", {"bucketID": bucket_id})

    def list_packages(self, bucket_id: int) -> list[JsonObj]:
        data = self.get("/v1/package/listBucketPackages", bucketID=bucket_id)
        return cast(list[JsonObj], data["packages"])

    def package(self, bucket: str, package: str) -> JsonObj:
        data = self.get("/v1/package/getByFullName", bucketName=bucket, packageName=package)
        return cast(JsonObj, data["package"])

    def create_package(
        self, bucket_id: int, name: str, redundancy: JsonObj | None = None
    ) -> JsonObj:
        body: JsonObj = {"bucketID": bucket_id, "name": name}
        if redundancy is not None:
            body["redundancy"] = redundancy
        return cast(JsonObj, self.post("/v1/package/create", body)["package"])

    def set_package_redundancy(self, package_id: int, redundancy: JsonObj | None) -> JsonObj:
        body: JsonObj = {"packageID": package_id, "redundancy": redundancy}
        return cast(JsonObj, self.post("/v1/package/update", body)["package"])

    def delete_package(self, package_id: int) -> None:
        self.post("/v1/package/delete", {"packageID": package_id})

    def clone_package(self, package_id: int, bucket_id: int, name: str) -> JsonObj:
        body = {"packageID": package_id, "bucketID": bucket_id, "name": name}
        return cast(JsonObj, self.post("/v1/package/clone", body)["package"])

    # -- objects -------------------------------------------------------------

    def upload(
        self,
        package_id: int,
        files: Sequence[tuple[str, FileWindow]],
        *,
        redundancy: JsonObj | None = None,
        affinity: int | None = None,
    ) -> list[JsonObj]:
        """One ``/v1/object/upload`` request; ``files`` are (object path, body)."""
        info: JsonObj = {"packageID": package_id}
        if redundancy is not None:
            info["redundancy"] = redundancy
        if affinity is not None:
            info["affinity"] = affinity
        parts = [
            ("files", (quote(path, safe=""), cast(IO[bytes], body), "application/octet-stream"))
            for path, body in files
        ]
        try:
            resp = self._send(
                "POST", "/v1/object/upload", data={"info": json.dumps(info)}, files=parts
            )
        finally:
            for _, body in files:
                body.close()
        return cast(list[JsonObj], unwrap(resp)["uploadeds"])

    def new_multipart(self, package_id: int, path: str) -> JsonObj:
        body = {"packageID": package_id, "path": path}
        return cast(JsonObj, self.post("/v1/object/newMultipartUpload", body)["object"])

    def upload_part(self, object_id: int, index: int, body: FileWindow) -> None:
        info = json.dumps({"objectID": object_id, "index": index})
        part = ("part", cast(IO[bytes], body), "application/octet-stream")
        try:
            resp = self._send(
                "POST", "/v1/object/uploadPart", data={"info": info}, files={"file": part}
            )
        finally:
            body.close()
        unwrap(resp)

    def complete_multipart(self, object_id: int, indexes: list[int]) -> JsonObj:
        body = {"objectID": object_id, "indexes": indexes}
        return cast(JsonObj, self.post("/v1/object/completeMultipartUpload", body)["object"])

    def object_at(self, package_id: int, path: str) -> JsonObj | None:
        data = self.get("/v1/object/listByPath", packageID=package_id, path=path, isPrefix=False)
        objects = cast(list[JsonObj], data["objects"])
        return objects[0] if objects else None

    def list_pages(
        self, package_id: int, prefix: str, *, recursive: bool, max_keys: int | None = None
    ) -> Iterator[tuple[list[str], list[JsonObj]]]:
        """(commonPrefixes, objects) page by page, following continuationToken."""
        token: str | None = None
        while True:
            data = self.get(
                "/v1/object/listByPath",
                packageID=package_id,
                path=prefix,
                isPrefix=True,
                noRecursive=not recursive,
                continuationToken=token,
                maxKeys=max_keys,
            )
            yield list(data.get("commonPrefixes") or []), list(data.get("objects") or [])
            token = data.get("nextContinuationToken")
            if not token:
                return

    def list_objects(self, package_id: int, prefix: str) -> list[JsonObj]:
        """Every object under ``prefix``, recursively."""
        found: list[JsonObj] = []
        for _, objects in self.list_pages(package_id, prefix, recursive=True):
            found += objects
        return found

    def download(
        self,
        object_id: int,
        write: Callable[[bytes], None],
        *,
        offset: int | None = None,
        length: int | None = None,
    ) -> int:
        """Stream the object's bytes into ``write``; returns the byte count."""
        params = {"objectID": object_id, "offset": offset, "length": length}
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            with self.http.stream("GET", "/v1/object/download", params=clean) as resp:
                if resp.status_code not in (200, 206):
                    resp.read()
                    raise _envelope_error(resp)
                total = 0
                for chunk in resp.iter_bytes(DOWNLOAD_CHUNK):
                    write(chunk)
                    total += len(chunk)
                return total
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def move(self, movings: list[JsonObj]) -> JsonObj:
        return cast(JsonObj, self.post("/v1/object/move", {"movings": movings}))

    def clone_objects(self, clonings: list[JsonObj]) -> list[JsonObj | None]:
        data = self.post("/v1/object/clone", {"clonings": clonings})
        return cast(list[JsonObj | None], data["objects"])

    def delete_objects(self, object_ids: list[int]) -> None:
        self.post("/v1/object/delete", {"objectIDs": object_ids})

    def delete_by_path(self, package_id: int, path: str) -> None:
        self.post("/v1/object/deleteByPath", {"packageID": package_id, "path": path})

    # -- keys and credentials ----------------------------------------------

    def create_user_key(self, name: str = "") -> JsonObj:
        return cast(JsonObj, self.post("/v1/userKey/create", {"name": name})["userKey"])

    def list_user_keys(self) -> list[JsonObj]:
        return cast(list[JsonObj], self.get("/v1/userKey/list")["userKeys"])

    def delete_user_key(self, key_id: int) -> None:
        self.post("/v1/userKey/delete", {"userKeyID": key_id})

    def create_api_key(self, bucket_id: int, name: str) -> JsonObj:
        body: JsonObj = {"bucketID": bucket_id, "name": name}
        return cast(JsonObj, self.post("/v1/apiKey/create", body)["apiKey"])

    def list_api_keys(self, bucket_id: int) -> list[JsonObj]:
        return cast(list[JsonObj], self.get("/v1/apiKey/list", bucketID=bucket_id)["apiKeys"])

    def delete_api_key(self, key_id: int) -> None:
        self.post("/v1/apiKey/delete", {"apiKeyID": key_id})

    def revoke_api_key(self, key: str) -> JsonObj:
        """Revoke a derived key; answers the project key it came from."""
        return cast(JsonObj, self.post("/v1/apiKey/revoke", {"key": key})["apiKey"])

    def project_info(self, bucket_id: int | None = None) -> JsonObj:
        """``projectID`` (UUID), ``bucketID``, ``name``, ``satellite``."""
        return cast(JsonObj, self.get("/v1/project/info", bucketID=bucket_id))

    def set_passphrase(self, grant: str) -> JsonObj:
        """Fix the project's passphrase to ``grant``'s (``POST /v1/project/passphrase``)."""
        return cast(JsonObj, self.post("/v1/project/passphrase", {"accessGrant": grant}))

    def register_access(self, grant: str, *, public: bool = False) -> JsonObj:
        """The auth service (``POST /v1/access``, no key needed): a grant in,
        ``access_key_id``, ``secret_key``, ``endpoint`` out. Its errors are
        plain text with the HTTP status."""
        request = self.http.build_request(
            "POST", "/v1/access", json={"access_grant": grant, "public": public}
        )
        del request.headers["Authorization"]  # the grant is the credential here
        try:
            resp = self.http.send(request)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if resp.status_code != 200:
            code = _ACCESS_STATUS.get(resp.status_code, "AuthServiceError")
            text = resp.text.strip()[:300] or f"HTTP {resp.status_code}"
            raise CliError(code, f"auth service: {text}")
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("access_key_id", "secret_key", "endpoint")
        ):
            raise CliError("BadResponse", "auth service: the answer is not credentials")
        return body


_ACCESS_STATUS = {
    400: "BadArgument",
    401: "Unauthorized",
    403: "Forbidden",
    404: "DataNotFound",
    409: "DataExists",
}


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def open_client(opts: GlobalOptions) -> JcsClient:
    """A client configured from the global options, env and data dir."""
    return JcsClient(resolve_config(opts))
