"""Composition root: builds every service once, in dependency order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog

from jointcloud.config import ConfigError, Settings
from jointcloud.core.access import AccessService
from jointcloud.core.accounts import AccountService
from jointcloud.core.authz import Principal
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import BucketService, PackageService
from jointcloud.core.health import HealthWaker
from jointcloud.core.jobstate import JobBoard
from jointcloud.core.models import User
from jointcloud.core.multipart import MultipartService
from jointcloud.core.objects import ObjectService
from jointcloud.core.outbound import OutboundGuard
from jointcloud.core.projectkeys import ProjectKeyService
from jointcloud.core.repair import RepairService
from jointcloud.core.transfer.runner import TaskRunner
from jointcloud.core.transfer.service import TransferService
from jointcloud.core.uploads import UploadSlots
from jointcloud.core.userspaces import SpacePool, UserSpaceService
from jointcloud.errors import OperationFailed, Unauthorized
from jointcloud.keys.apikeys import new_api_key
from jointcloud.keys.master import (
    PRIVATE_DIR,
    MasterKey,
    make_private,
    private_dir,
    write_private,
)
from jointcloud.meta import layouts
from jointcloud.meta.db import Database
from jointcloud.spaces.fileio import fsync_dir

log = structlog.get_logger(__name__)

ADMIN = "admin"
# The first start's root key is written here (then renamed to root.key once
# the database holds it), so that a start killed in between leaves the key.
STAGED_ROOT_KEY = ".root.key-"


def _name_root_key(staged: Path, key_file: Path) -> None:
    """The admin's staged key becomes root.key; another start on the same
    data dir may have named it first (then the staged file is gone)."""
    try:
        os.replace(staged, key_file)
    except FileNotFoundError:
        if not key_file.exists():
            raise
    fsync_dir(key_file.parent)


async def _master_key(path: Path, db: Database) -> MasterKey:
    """The data dir's master key, made on the first start only: one made for
    a database that holds sealed data (a restore into a new data dir) would
    leave every object unreadable and seal new ones with another key (found
    by review: they answered 500, old and new alike, depending on the key)."""
    async with db.read() as conn:
        sealed = await layouts.a_wrapped_key(conn)
    if sealed is not None and not path.exists():  # noqa: ASYNC240 - once, at start-up
        raise ConfigError(
            f"{path} is missing, but the metadata database holds objects sealed with a "
            "master key: restore master.key from the backup of this data dir"
        )
    try:
        master = MasterKey.load_or_create(path)
    except ValueError:  # a truncated copy, or another file put in its place
        raise ConfigError(
            f"{path} is not a master key (32 bytes): restore the data dir's own master.key"
        ) from None
    if sealed is not None:
        try:
            master.unwrap_data_key(sealed)
        except OperationFailed:
            raise ConfigError(
                f"{path} is not the master key this metadata database was sealed with: "
                "restore the data dir's own master.key"
            ) from None
    return master


@dataclass
class Context:
    settings: Settings
    db: Database
    master: MasterKey
    pool: SpacePool
    accounts: AccountService
    project_keys: ProjectKeyService
    access: AccessService
    spaces: UserSpaceService
    buckets: BucketService
    packages: PackageService
    store: BlockStore
    objects: ObjectService
    multipart: MultipartService
    repair: RepairService
    tasks: TaskRunner
    transfers: TransferService
    outbound: OutboundGuard
    health: HealthWaker

    @classmethod
    async def open(cls, settings: Settings) -> Context:
        # The data dir and everything the server writes there are its alone:
        # 0700 directories, 0600 files, whatever the umask (and tightened if
        # an older start left them looser).
        try:
            private_dir(settings.data_dir)
        except OSError as exc:  # a file of that name, or a directory it may not make
            why = "it is not a directory" if isinstance(exc, FileExistsError) else exc.strerror
            raise ConfigError(f"the data dir {settings.data_dir} cannot be used: {why}") from None
        db = Database(settings.db_url, timeout=settings.db_timeout_seconds)
        await db.migrate()
        try:
            master = await _master_key(settings.data_dir / "master.key", db)
        except BaseException:  # a start refused for its master key leaves nothing open
            await db.close()
            raise
        pool = SpacePool(db, master, settings.space_rules())
        buckets = BucketService(db)
        project_keys = ProjectKeyService(db, master, buckets)
        packages = PackageService(db, buckets)
        store = BlockStore(
            db,
            master,
            pool,
            inline_max=settings.inline_max_bytes,
            renew_every=settings.gc_delay.total_seconds() / 4 or None,
        )
        repair = RepairService(db, store, pool)
        store.on_bad_block = repair.note_bad_block  # degraded reads queue repair
        health = HealthWaker(JobBoard(db))
        store.on_slow_space = health.note_slow_space  # hedged reads ask for a probe
        spaces = UserSpaceService(db, pool, store.deletes)
        slots = UploadSlots(settings.max_uploads_per_user)  # shared by PUTs and parts
        objects = ObjectService(db, packages, store, slots)
        tasks = TaskRunner(db, pool, objects)
        tasks.parallel = settings.sync_parallel
        return cls(
            settings=settings,
            db=db,
            master=master,
            pool=pool,
            accounts=AccountService(db, capability_keys=project_keys),
            project_keys=project_keys,
            access=AccessService(
                db,
                project_keys,
                buckets,
                satellite=settings.satellite_url(),
                s3_endpoint=settings.s3_endpoint(),
            ),
            spaces=spaces,
            buckets=buckets,
            packages=packages,
            store=store,
            objects=objects,
            multipart=MultipartService(
                db, packages, store, min_part_size=settings.multipart_min_part_size, slots=slots
            ),
            repair=repair,
            tasks=tasks,
            transfers=TransferService(db, pool, spaces, packages, objects, tasks),
            outbound=OutboundGuard(settings.space_rules()),
            health=health,
        )

    async def bootstrap(self) -> str | None:
        """First start: the admin user, its root key (returned once) and one
        local user space under the data dir."""
        key_file = self.settings.data_dir / "root.key"
        if key_file.exists() and not await self.accounts.has_user(ADMIN):
            # A data dir used before, on a database that holds nobody: an
            # empty or wrong meta.db (a restore gone wrong). Starting afresh
            # would replace the root key, and fsck would call every block of
            # the old store an orphan.
            raise ConfigError(
                f"the metadata database holds no users, but this data dir was used before "
                f"({key_file} exists): restore its meta.db (or point --database-url at its "
                "database); to start a new store here, move root.key away"
            )
        # The key is on disk before the database holds it, and named
        # root.key after: a first start killed in between (found by review)
        # left a database with the admin's key and no root.key, and every
        # later start served without one, silently.
        staged: Path | None = None
        fresh: str | None = None
        if not await self.accounts.has_user(ADMIN):
            staged = key_file.with_name(STAGED_ROOT_KEY + secrets.token_hex(8))
            fresh = new_api_key()
            write_private(staged, (fresh + "\n").encode())
        try:
            user, key = await self.accounts.ensure_user(ADMIN, fresh)
            if key is not None and staged is not None:
                _name_root_key(staged, key_file)
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        # Only now, with the admin committed: a key staged by another start
        # still running (two processes starting on one data dir) is then
        # the admin's, to be named root.key, or one the database can never
        # take, to be deleted (found by review: looked at before, a live
        # start's key was renamed or deleted under it).
        recovered = await self._name_staged_root_key(key_file)
        make_private(key_file)
        spaces = self.settings.data_dir / "spaces"
        private_dir(spaces)
        for space_dir in spaces.iterdir():  # Local spaces there, older ones too
            if not space_dir.is_symlink() and space_dir.is_dir():
                private_dir(space_dir)
                for root in space_dir.iterdir():  # their root directories ("jcs")
                    if not root.is_symlink() and root.is_dir():
                        os.chmod(root, PRIVATE_DIR)
        admin = Principal.user(user.user_id)
        if not await self.spaces.list(admin):
            path = spaces / "local"
            private_dir(path)
            await self.spaces.create(
                admin, "local", {"type": "Local", "path": str(path)}, None, None
            )
        return key or recovered

    async def _name_staged_root_key(self, key_file: Path) -> str | None:
        """A first start killed after its commit left its root key staged:
        it becomes root.key (and is returned) if the database holds it as
        the admin's key; staged keys the database never took are deleted.
        Called once the admin exists: a staged key that is not its key can
        never become it."""
        recovered = None
        for staged in sorted(key_file.parent.glob(STAGED_ROOT_KEY + "*")):
            if not key_file.exists():  # noqa: ASYNC240 - once, at start-up
                try:
                    key = staged.read_text().strip()
                except FileNotFoundError:
                    continue  # named root.key meanwhile by the start that staged it
                try:
                    owner = await self.accounts.authenticate(key)
                except Unauthorized:
                    owner = None
                if owner is not None and owner.name == ADMIN:
                    _name_root_key(staged, key_file)
                    recovered = key
                    continue
            staged.unlink(missing_ok=True)
        return recovered

    async def add_user(self, name: str) -> tuple[User, str]:
        """The operator adds a user: a first key (returned once) and a local
        space of their own under the data dir, apart from everyone else's."""
        user, key = await self.accounts.add_user(name)
        # Not a name anyone can guess: any user may make a local space under
        # the data dir, and one made at the next user's path in advance
        # failed this (leaving a user with no space and an unseen key).
        path = self.settings.data_dir / "spaces" / f"user-{user.user_id}-{secrets.token_hex(6)}"
        try:
            private_dir(path)
            await self.spaces.create(
                Principal.user(user.user_id),
                "local",
                {"type": "Local", "path": str(path)},
                None,
                None,
            )
        except BaseException:
            with contextlib.suppress(OSError):
                path.rmdir()  # ours, and still empty
            await asyncio.shield(self.accounts.undo_add_user(user.user_id))
            raise
        return user, key

    async def close(self) -> None:
        await self.health.close()
        await self.repair.close()
        await self.pool.close()
        await self.db.close()
