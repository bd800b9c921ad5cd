"""Buckets and packages: the namespace above objects."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jointcloud.core.authz import Operation, Principal, allows, authorize, visible_packages
from jointcloud.core.commands import PackageRef, check_tags
from jointcloud.core.directory import PackageDirectory
from jointcloud.core.models import Bucket, CorsRule, Package
from jointcloud.core.paths import entity_name
from jointcloud.errors import (
    AccessDenied,
    AlreadyExists,
    BadArgument,
    BucketNotFound,
    Conflict,
    DomainError,
    DuplicateEntry,
    NotEmpty,
    OutOfScope,
    PackageNotFound,
)
from jointcloud.meta import catalog, jobs
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.redundancy.policy import Redundancy, parse_redundancy

MAX_PACKAGE_TAGS = 50
MAX_CORS_RULES = 100
CORS_METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MAX_CORS_RULE_ID = 255
# Objects a package clone copies per statement (catalog.clone_objects).
CLONE_BATCH = 1000
PAGE_BATCH = 1000  # packages read at a time for a page of them by name


def check_cors_rules(rules: Sequence[CorsRule]) -> list[CorsRule]:
    """A package's CORS rules as given: 1 to ``MAX_CORS_RULES`` rules, each
    with at least one origin and one method of ``CORS_METHODS``; origin and
    header patterns with at most one ``*``; a non-negative cache age."""
    if not rules:
        raise BadArgument("a CORS configuration needs at least one rule")
    if len(rules) > MAX_CORS_RULES:
        raise BadArgument(f"CORS rules: {len(rules)} given; at most {MAX_CORS_RULES}")
    for rule in rules:
        if not rule.allowed_methods:
            raise BadArgument("every CORS rule needs at least one allowed method")
        if not rule.allowed_origins:
            raise BadArgument("every CORS rule needs at least one allowed origin")
        for method in rule.allowed_methods:
            if method not in CORS_METHODS:
                raise BadArgument(
                    f"Found unsupported HTTP method in CORS config. Unsupported method is "
                    f"{method[:32]}"
                )
        for kind, patterns in (
            ("AllowedOrigin", rule.allowed_origins),
            ("AllowedHeader", rule.allowed_headers),
        ):
            for pattern in patterns:
                if pattern.count("*") > 1:
                    raise BadArgument(
                        f'{kind} "{pattern[:128]}" can not have more than one wildcard.'
                    )
                if not pattern or any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
                    raise BadArgument(
                        f"{kind} {pattern[:128]!r} is empty or holds control characters"
                    )
        for header in rule.expose_headers:
            # It is sent back in Access-Control-Expose-Headers: a header name.
            if not (header.isascii() and header.isprintable()) or " " in header:
                raise BadArgument(
                    f"ExposeHeader {header[:128]!r} is not a header name "
                    "(printable ASCII without spaces)"
                )
        if rule.max_age_seconds is not None and rule.max_age_seconds < 0:
            raise BadArgument("MaxAgeSeconds must not be negative")
        if rule.rule_id is not None and len(rule.rule_id) > MAX_CORS_RULE_ID:
            raise BadArgument(f"a CORS rule ID is at most {MAX_CORS_RULE_ID} characters")
    return list(rules)


def first_cors_match(
    configs: Iterable[Sequence[CorsRule]], origin: str, method: str, headers: Sequence[str] = ()
) -> CorsRule | None:
    """The first rule (of the first configuration that has one) allowing
    ``origin`` to use ``method`` with ``headers``."""
    for rules in configs:
        for rule in rules:
            if rule.matches(origin, method, headers):
                return rule
    return None


def optional_policy(raw: Any) -> Redundancy | None:
    return None if raw is None else parse_redundancy(raw)


class BucketService:
    def __init__(self, db: Database, directory: PackageDirectory | None = None) -> None:
        self.db = db
        # Shared with PackageService: a bucket's policy is part of what a
        # remembered package says (the policy its uploads get).
        self.directory = directory or PackageDirectory()

    async def create(self, principal: Principal, name: object, redundancy: object = None) -> Bucket:
        name = entity_name(name, "name")
        policy = optional_policy(redundancy)
        authorize(principal, Operation.WRITE)
        if principal.project_id is not None or any(c.paths for c in principal.caveats):
            raise AccessDenied("the key is limited to one bucket or to some packages")
        try:
            async with self.db.write() as conn:
                if await catalog.get_bucket_by_name(conn, principal.user_id, name) is not None:
                    raise AlreadyExists(f"bucket {name!r} already exists")
                return await catalog.create_bucket(conn, principal.user_id, name, policy)
        except DuplicateEntry as exc:
            raise AlreadyExists(f"bucket {name!r} already exists") from exc

    async def get(
        self, principal: Principal, bucket_id: int, op: Operation = Operation.READ
    ) -> Bucket:
        _scoped(principal, bucket_id, f"bucket {bucket_id} not found")
        authorize(principal, op, project_id=bucket_id)
        async with self.db.read() as conn:
            bucket = await catalog.get_bucket(conn, principal.user_id, bucket_id)
        if bucket is None:
            raise BucketNotFound(f"bucket {bucket_id} not found")
        return bucket

    async def get_by_name(self, principal: Principal, name: str, field: str = "name") -> Bucket:
        name = entity_name(name, field)  # no such name can exist: say why
        async with self.db.read() as conn:
            bucket = await catalog.get_bucket_by_name(conn, principal.user_id, name)
        if bucket is None:
            raise BucketNotFound(f"bucket {name!r} not found")
        _scoped(principal, bucket.bucket_id, f"bucket {name!r} not found")
        authorize(principal, Operation.READ, project_id=bucket.bucket_id)
        return bucket

    async def list(self, principal: Principal) -> list[Bucket]:
        """The user's buckets; a key scoped to a project sees only its own."""
        authorize(principal, Operation.LIST)
        async with self.db.read() as conn:
            if principal.project_id is None:
                return await catalog.list_buckets(conn, principal.user_id)
            # Its one bucket, not every bucket of its owner (found by review).
            bucket = await catalog.get_bucket(conn, principal.user_id, principal.project_id)
        return [] if bucket is None else [bucket]

    async def set_redundancy(
        self, principal: Principal, bucket_id: int, redundancy: object
    ) -> Bucket:
        """Change the default policy (``None``: no default, i.e. none). The
        objects of packages that inherit it are re-encoded in the background."""
        policy = optional_policy(redundancy)
        _scoped(principal, bucket_id, f"bucket {bucket_id} not found")
        authorize(principal, Operation.WRITE, project_id=bucket_id, whole=True)
        with self.directory.changing():
            async with self.db.write() as conn:
                if await catalog.get_bucket(conn, principal.user_id, bucket_id) is None:
                    raise BucketNotFound(f"bucket {bucket_id} not found")
                await catalog.set_bucket_policy(conn, bucket_id, policy)
                await jobs.wake(conn, "recode", now())
                bucket = await catalog.get_bucket(conn, principal.user_id, bucket_id)
        assert bucket is not None
        return bucket

    async def delete(self, principal: Principal, bucket_id: int) -> None:
        _scoped(principal, bucket_id, f"bucket {bucket_id} not found")
        authorize(principal, Operation.DELETE, project_id=bucket_id, whole=True)
        async with self.db.write() as conn:
            if await catalog.get_bucket(conn, principal.user_id, bucket_id) is None:
                raise BucketNotFound(f"bucket {bucket_id} not found")
            names = await catalog.package_names(conn, bucket_id)
            if names:
                shown = ", ".join(repr(n) for n in names[:10])
                more = f" and {len(names) - 10} more" if len(names) > 10 else ""
                raise Conflict(
                    f"bucket {bucket_id} still holds packages {shown}{more}; delete them first"
                )
            if not await catalog.delete_bucket(conn, bucket_id):
                # On PostgreSQL a concurrent delete found it too, and its
                # DELETE went first: this one waited for it, then deleted
                # nothing (every delete of one bucket answered OK).
                raise BucketNotFound(f"bucket {bucket_id} not found")
        self.directory.changed()


def _scoped(principal: Principal, bucket_id: int, missing: str) -> None:
    """A key of one project asking for another (by id or name) is told the
    bucket is not found: refusing would confirm it exists."""
    if principal.project_id is not None and principal.project_id != bucket_id:
        raise BucketNotFound(missing)


def _unnamed_refusal(
    principal: Principal, pkg: Package, op: Operation, path: str | None, whole: bool
) -> DomainError:
    """A scope refusal of a package named by id, saying nothing the caller
    did not send (not its name, nor that something is there): a package the
    key does not reach is not found, a path outside its prefixes is refused
    by its path, and a whole-package act by a key of part of it
    is refused."""
    where = {"project_id": pkg.bucket_id, "package": pkg.name}
    if whole and allows(principal, op, **where):
        return OutOfScope(
            f"the key's caveats reach only part of package {pkg.package_id}; "
            "this acts on the whole package"
        )
    if path is not None and allows(principal, Operation.LIST, **where):
        return OutOfScope(
            f"the key's caveat does not reach path {path!r} of package {pkg.package_id}"
        )
    return PackageNotFound(f"package {pkg.package_id} not found")


def _may_make(principal: Principal, bucket_id: int, name: str) -> None:
    """A new package is all of it: a key that reaches only a prefix inside
    may not make it, as the published satellite refuses a bucket to a
    caveat path with a prefix. Asked once the package is known not to
    exist: one that exists is "already exists" to any key that reaches into
    it (rclone sends CreateBucket before its first upload, and S3 answers
    an existing bucket of one's own as made)."""
    authorize(principal, Operation.WRITE, project_id=bucket_id, package=name, whole=True)


class PackageService:
    def __init__(self, db: Database, buckets: BucketService) -> None:
        self.db = db
        self.buckets = buckets
        self.directory = buckets.directory

    async def create(
        self, principal: Principal, bucket_id: int, name: object, redundancy: object = None
    ) -> Package:
        name = entity_name(name, "name")
        policy = optional_policy(redundancy)
        authorize(principal, Operation.WRITE, project_id=bucket_id, package=name)
        try:
            async with self.db.write() as conn:
                if await catalog.get_bucket(conn, principal.user_id, bucket_id) is None:
                    raise BucketNotFound(f"bucket {bucket_id} not found")
                if await catalog.get_package_by_name(conn, bucket_id, name) is not None:
                    raise AlreadyExists(f"package {name!r} already exists in bucket {bucket_id}")
                _may_make(principal, bucket_id, name)
                return await catalog.create_package(conn, bucket_id, name, policy)
        except DuplicateEntry as exc:
            raise AlreadyExists(f"package {name!r} already exists in bucket {bucket_id}") from exc

    async def get(
        self, principal: Principal, package_id: int, op: Operation = Operation.READ
    ) -> Package:
        return await self.resolve(principal, PackageRef.by_id(package_id), op)

    async def resolve(
        self,
        principal: Principal,
        ref: PackageRef,
        op: Operation,
        path: str | None = None,
        *,
        whole: bool = False,
    ) -> Package:
        """The package ``ref`` names, if ``principal`` may do ``op`` on it (at
        ``path``): the one place every protocol's address becomes a package.
        A name is authorized before it is looked up, so a restricted key
        learns nothing about packages outside its caveats."""
        if ref.package_id is not None:
            pkg = await self._by_id(principal.user_id, ref.package_id)
            try:
                authorize(
                    principal,
                    op,
                    project_id=pkg.bucket_id,
                    package=pkg.name,
                    path=path,
                    whole=whole,
                )
            except OutOfScope:
                raise _unnamed_refusal(principal, pkg, op, path, whole) from None
            return pkg
        if ref.name is None:
            raise BadArgument("a package is named by its id or by its name")
        name = entity_name(ref.name, "package name")
        project_id = ref.project_id
        if project_id is None and ref.project_name is not None:
            async with self.db.read() as conn:
                bucket = await catalog.get_bucket_by_name(
                    conn, principal.user_id, entity_name(ref.project_name, "bucket name")
                )
            if bucket is None:
                raise BucketNotFound(f"bucket {ref.project_name!r} not found")
            project_id = bucket.bucket_id
        project_id = project_id if project_id is not None else principal.project_id
        if project_id is None:
            raise BadArgument(f"package {name!r}: say which bucket (project) it is in")
        authorize(principal, op, project_id=project_id, package=name, path=path, whole=whole)
        return await self._by_name(principal.user_id, project_id, name)

    async def _by_id(self, user_id: int, package_id: int) -> Package:
        key = ("id", user_id, package_id)
        pkg = self.directory.get(key)
        if pkg is None:
            generation = self.directory.generation
            async with self.db.read() as conn:
                pkg = await catalog.get_package(conn, user_id, package_id)
            if pkg is None:
                raise PackageNotFound(f"package {package_id} not found")
            self.directory.put(key, pkg, generation)
        return pkg

    async def _by_name(self, user_id: int, project_id: int, name: str) -> Package:
        key = ("name", user_id, project_id, name)
        pkg = self.directory.get(key)
        if pkg is None:
            generation = self.directory.generation
            async with self.db.read() as conn:
                found = await catalog.find_package(conn, user_id, project_id, name)
            if not found.bucket_exists:
                raise BucketNotFound(f"bucket {project_id} not found")
            if found.package is None:
                raise PackageNotFound(f"package {name!r} not found", name=name)
            pkg = found.package
            self.directory.put(key, pkg, generation)
        return pkg

    async def get_tags(self, principal: Principal, ref: PackageRef) -> dict[str, str]:
        """The package's tags (the S3 bucket's tag set)."""
        pkg = await self.resolve(principal, ref, Operation.READ)
        async with self.db.read() as conn:
            return await catalog.get_package_tags(conn, pkg.package_id)

    async def set_tags(
        self, principal: Principal, ref: PackageRef, tags: Mapping[str, str]
    ) -> dict[str, str]:
        """Replace the package's tags: at most ``MAX_PACKAGE_TAGS`` (S3's
        limit for a bucket), keys and values as an object's."""
        checked = check_tags(tags, MAX_PACKAGE_TAGS, "package")
        pkg = await self.resolve(principal, ref, Operation.WRITE, whole=True)
        async with self.db.write() as conn:
            await catalog.set_package_tags(conn, pkg.package_id, checked)
        return checked

    async def delete_tags(self, principal: Principal, ref: PackageRef) -> None:
        await self.set_tags(principal, ref, {})

    async def get_cors(self, principal: Principal, ref: PackageRef) -> list[CorsRule]:
        """The package's CORS rules, in order (none set: an empty list)."""
        pkg = await self.resolve(principal, ref, Operation.READ)
        async with self.db.read() as conn:
            return await catalog.get_package_cors(conn, pkg.package_id)

    async def set_cors(
        self, principal: Principal, ref: PackageRef, rules: Sequence[CorsRule]
    ) -> list[CorsRule]:
        """Replace the package's CORS rules (see ``check_cors_rules``)."""
        checked = check_cors_rules(rules)
        pkg = await self.resolve(principal, ref, Operation.WRITE, whole=True)
        async with self.db.write() as conn:
            await catalog.set_package_cors(conn, pkg.package_id, checked)
        return checked

    async def delete_cors(self, principal: Principal, ref: PackageRef) -> None:
        pkg = await self.resolve(principal, ref, Operation.WRITE, whole=True)
        async with self.db.write() as conn:
            await catalog.set_package_cors(conn, pkg.package_id, [])

    async def cors_configs(self, name: str, project_id: int | None = None) -> list[list[CorsRule]]:
        """The CORS rules of the packages called ``name`` that have some (in
        project ``project_id`` only, if given). No principal: a browser's
        preflight carries no credentials, and what a rule allows is what
        every cross-origin answer shows anyway."""
        async with self.db.read() as conn:
            return await catalog.cors_by_package_name(conn, name, project_id)

    async def get_by_full_name(
        self, principal: Principal, bucket_name: str, package_name: str
    ) -> Package:
        bucket = await self.buckets.get_by_name(principal, bucket_name, "bucket name")
        package_name = entity_name(package_name, "package name")
        authorize(principal, Operation.READ, project_id=bucket.bucket_id, package=package_name)
        async with self.db.read() as conn:
            pkg = await catalog.get_package_by_name(conn, bucket.bucket_id, package_name)
        if pkg is None:
            raise PackageNotFound(f"package {package_name!r} not found in bucket {bucket_name!r}")
        return pkg

    async def list(self, principal: Principal, bucket_id: int) -> list[Package]:
        """The bucket's packages that ``principal``'s caveats reach."""
        await self.buckets.get(principal, bucket_id, Operation.LIST)
        async with self.db.read() as conn:
            pkgs = await catalog.list_packages(conn, bucket_id)
        shown = set(visible_packages(principal, [p.name for p in pkgs]))
        return [p for p in pkgs if p.name in shown]

    async def by_name(
        self, principal: Principal, bucket_id: int, *, prefix: str, after: str | None, limit: int
    ) -> builtins.list[Package]:
        """At most ``limit`` of the bucket's packages that ``principal``'s
        caveats reach, named with ``prefix``, past ``after``, by name in
        byte order (S3's ListBuckets): read a batch at a time, so that a
        page costs about a page, not every package of the bucket."""
        await self.buckets.get(principal, bucket_id, Operation.LIST)
        start, inclusive = (
            (after, False) if after is not None and after >= prefix else (prefix, True)
        )
        batch_size = min(limit, PAGE_BATCH)
        found: list[Package] = []
        while len(found) < limit:
            async with self.db.read() as conn:
                batch = await catalog.packages_from(conn, bucket_id, start, inclusive, batch_size)
            named = [p for p in batch if p.name.startswith(prefix)]
            shown = set(visible_packages(principal, [p.name for p in named]))
            found += [p for p in named if p.name in shown]
            if len(named) < len(batch) or len(batch) < batch_size:
                break  # past the prefix's names, or past the last package
            start, inclusive = batch[-1].name, False
        return found[:limit]

    async def delete(
        self, principal: Principal, package_id: int, *, only_if_empty: bool = False
    ) -> None:
        """Delete a package with its objects, or (``only_if_empty``, as S3
        deletes a bucket) refuse with ``NotEmpty`` while it holds any."""
        pkg = await self.resolve(
            principal, PackageRef.by_id(package_id), Operation.DELETE, whole=True
        )
        with self.directory.changing():
            async with self.db.write() as conn:
                # The package's paths before anything is looked at, as every
                # writer of its objects takes them: under PostgreSQL's READ
                # COMMITTED an object committed between an emptiness check
                # and the delete was deleted with the package after its
                # writer was answered, and two deletes both succeeded.
                if not await catalog.lock_package_paths(conn, package_id) or (
                    await catalog.get_package(conn, principal.user_id, package_id) is None
                ):
                    raise PackageNotFound(f"package {package_id} not found")
                if only_if_empty and await catalog.list_objects(conn, package_id, "", None, 1):
                    raise NotEmpty(f"package {pkg.name!r} is not empty")
                await catalog.delete_package(conn, package_id)

    async def set_redundancy(
        self, principal: Principal, package_id: int, redundancy: object
    ) -> Package:
        """Change the policy (``None``: inherit the bucket's). Its objects are
        re-encoded in the background."""
        policy = optional_policy(redundancy)
        await self.resolve(principal, PackageRef.by_id(package_id), Operation.WRITE, whole=True)
        with self.directory.changing():
            async with self.db.write() as conn:
                if await catalog.get_package(conn, principal.user_id, package_id) is None:
                    raise PackageNotFound(f"package {package_id} not found")
                await catalog.set_package_policy(conn, package_id, policy)
                await jobs.wake(conn, "recode", now())
                pkg = await catalog.get_package(conn, principal.user_id, package_id)
        assert pkg is not None
        return pkg

    async def effective_policy(
        self, principal: Principal, package_id: int
    ) -> tuple[Package, Redundancy]:
        """The package and the policy its uploads get (its own, else its
        bucket's). Callers have authorized the operation on the package."""
        async with self.db.read() as conn:
            found = await catalog.package_policy(conn, principal.user_id, package_id)
        if found is None:
            raise PackageNotFound(f"package {package_id} not found")
        return found

    async def clone(
        self, principal: Principal, package_id: int, bucket_id: int, name: object
    ) -> Package:
        """A new package whose objects share the source's immutable layouts."""
        name = entity_name(name, "name")
        src = await self.resolve(
            principal, PackageRef.by_id(package_id), Operation.READ, whole=True
        )
        authorize(principal, Operation.WRITE, project_id=bucket_id, package=name)
        try:
            async with self.db.write() as conn:
                if await catalog.get_bucket(conn, principal.user_id, bucket_id) is None:
                    raise BucketNotFound(f"bucket {bucket_id} not found")
                if await catalog.get_package_by_name(conn, bucket_id, name) is not None:
                    raise AlreadyExists(f"package {name!r} already exists in bucket {bucket_id}")
                _may_make(principal, bucket_id, name)
                dst = await catalog.create_package(conn, bucket_id, name, src.redundancy)
                # The source's paths, as its writers take them: no object of
                # it changes until the clone commits. Without it PostgreSQL's
                # READ COMMITTED gave a clone the row of one version and the
                # parts of the next (found by review: objects whose bytes did
                # not match their size and hash, or had none).
                if not await catalog.lock_package_paths(conn, src.package_id):
                    raise PackageNotFound(f"package {package_id} not found")
                after: str | None = None
                while True:
                    after = await catalog.clone_objects(
                        conn, src.package_id, dst.package_id, after, CLONE_BATCH
                    )
                    if after is None:
                        return dst
        except DuplicateEntry as exc:  # a concurrent create of the same name
            raise AlreadyExists(f"package {name!r} already exists in bucket {bucket_id}") from exc
