"""Two processes making the same fresh data dir at once (``jcs serve`` and
another ``jcs serve`` of other roles, started together): each runs the
first start's steps, and neither may break the other's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jointcloud.config import Settings
from jointcloud.context import STAGED_ROOT_KEY, Context


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", local_roots=(tmp_path,), endpoint_allow=("127.0.0.1",)
    )


def _check(settings: Settings, key: str | None, others: list[str | None]) -> None:
    assert key is not None
    key_file = settings.data_dir / "root.key"
    assert key_file.read_text().strip() == key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert others in ([None], [key])  # the key is the first start's, whoever names it
    assert [p for p in settings.data_dir.iterdir() if p.name.startswith(STAGED_ROOT_KEY)] == []


async def test_a_start_meeting_another_between_commit_and_naming_keeps_both(
    tmp_path: Path,
) -> None:
    """One start has committed the admin with its staged key and not yet
    named root.key when another start runs. The other one took the staged
    key as a dead start's leftover and renamed it, and the first then
    failed its own rename (FileNotFoundError): that start never served."""
    settings = _settings(tmp_path)
    first = await Context.open(settings)
    second = await Context.open(settings)
    try:
        ensure = first.accounts.ensure_user
        others: list[str | None] = []

        async def ensure_then_another_start(name: str, key: str | None = None):  # type: ignore[no-untyped-def]
            made = await ensure(name, key)
            others.append(await second.bootstrap())  # committed, root.key not named yet
            return made

        first.accounts.ensure_user = ensure_then_another_start  # type: ignore[method-assign]
        key = await first.bootstrap()
        _check(settings, key, others)
        assert (await first.accounts.authenticate(key)).name == "admin"
    finally:
        await second.close()
        await first.close()


async def test_a_start_that_finds_another_s_key_staged_before_its_commit_keeps_it(
    tmp_path: Path,
) -> None:
    """Another start looks at the staged keys while the first one's is not
    committed yet (so it is no key of the database's: it was deleted as a
    dead start's), then finds the admin made. The first start's rename
    failed, and the data dir was left with an admin whose key nobody had,
    and no root.key: every later start served without one."""
    settings = _settings(tmp_path)
    first = await Context.open(settings)
    second = await Context.open(settings)
    try:
        ensure = first.accounts.ensure_user
        has_user = second.accounts.has_user
        made: list[object] = []
        others: list[str | None] = []

        async def commit_first_then_ask(name: str) -> bool:
            if not made:  # the first start commits while the other one runs
                made.append(await ensure(*committing))
            return await has_user(name)

        committing: tuple[str, str | None] = ("", None)

        async def another_start_meanwhile(name: str, key: str | None = None):  # type: ignore[no-untyped-def]
            nonlocal committing
            committing = (name, key)
            others.append(await second.bootstrap())
            if not made:
                made.append(await ensure(name, key))
            return made[0]

        second.accounts.has_user = commit_first_then_ask  # type: ignore[method-assign]
        first.accounts.ensure_user = another_start_meanwhile  # type: ignore[method-assign]
        key = await first.bootstrap()

        _check(settings, key, others)
        assert key is not None
        assert (await first.accounts.authenticate(key)).name == "admin"
    finally:
        await second.close()
        await first.close()


async def test_a_staged_key_named_root_key_while_another_start_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start that staged the key names it root.key between the other
    start's listing of staged keys and its reading of this one."""
    settings = _settings(tmp_path)
    first = await Context.open(settings)
    second = await Context.open(settings)
    try:
        ensure = first.accounts.ensure_user
        others: list[str | None] = []
        read_text = Path.read_text

        def renamed_first(path: Path, *args: object, **kwargs: object) -> str:
            if path.name.startswith(STAGED_ROOT_KEY):  # its own start names it now
                os.replace(path, path.with_name("root.key"))
            return read_text(path, *args, **kwargs)  # type: ignore[arg-type]

        async def ensure_then_another_start(name: str, key: str | None = None):  # type: ignore[no-untyped-def]
            made = await ensure(name, key)
            with monkeypatch.context() as patch:
                patch.setattr(Path, "read_text", renamed_first)
                others.append(await second.bootstrap())
            return made

        first.accounts.ensure_user = ensure_then_another_start  # type: ignore[method-assign]
        key = await first.bootstrap()

        _check(settings, key, others)
    finally:
        await second.close()
        await first.close()
