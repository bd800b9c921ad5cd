"""The authorization rules as a table (operation × caveat → allowed?), and
the property that matters most: adding a caveat never widens access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jointcloud.core.authz import (
    Caveat,
    Operation,
    PathGrant,
    Principal,
    allows,
    authorize,
    visible,
    visible_packages,
)
from jointcloud.errors import AccessDenied

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
R, W, L, D = Operation.READ, Operation.WRITE, Operation.LIST, Operation.DELETE
ALICE = Principal.user(1)

READ_ONLY = Caveat(disallow=frozenset({W, D}))
PHOTOS = Caveat(paths=(PathGrant("photos"),))
PHOTOS_2024 = Caveat(paths=(PathGrant("photos", "2024/"),))
EXPIRED = Caveat(not_after=NOW - timedelta(seconds=1))
NOT_YET = Caveat(not_before=NOW + timedelta(hours=1))
ONE = Caveat(paths=(PathGrant("docs", "a.txt"),))
WINDOW = Caveat(not_before=NOW - timedelta(hours=1), not_after=NOW + timedelta(hours=1))

# (caveats, operation, package, path, allowed?)
TABLE = [
    ((), R, "photos", "a.jpg", True),
    ((), D, "any", "x", True),
    ((READ_ONLY,), R, "photos", "a.jpg", True),
    ((READ_ONLY,), L, "photos", None, True),
    ((READ_ONLY,), W, "photos", "a.jpg", False),
    ((READ_ONLY,), D, "photos", "a.jpg", False),
    ((PHOTOS,), R, "photos", "deep/a.jpg", True),
    ((PHOTOS,), W, "docs", "a.txt", False),
    ((PHOTOS,), L, None, None, True),  # list packages: filtered by visible_packages
    ((PHOTOS_2024,), R, "photos", "2024/a.jpg", True),
    ((PHOTOS_2024,), R, "photos", "2023/a.jpg", False),
    ((PHOTOS_2024,), W, "photos", "2024", False),  # "2024" is not under "2024/"
    ((PHOTOS_2024,), L, "photos", "", True),  # a wider listing, filtered by visible
    ((PHOTOS_2024,), L, "photos", "20", True),
    ((PHOTOS_2024,), L, "photos", "2023/", False),
    ((PHOTOS_2024,), L, "photos", "2024/jan/", True),
    ((EXPIRED,), R, "photos", "a", False),
    ((NOT_YET,), R, "photos", "a", False),
    ((WINDOW,), R, "photos", "a", True),
    ((READ_ONLY, PHOTOS_2024), R, "photos", "2024/a", True),
    ((READ_ONLY, PHOTOS_2024), W, "photos", "2024/a", False),
    ((PHOTOS, PHOTOS_2024), R, "photos", "2023/a", False),  # AND, not OR
    ((Caveat(paths=(PathGrant("a"), PathGrant("b", "x/"))),), R, "b", "x/1", True),
    ((Caveat(paths=(PathGrant("a"), PathGrant("b", "x/"))),), R, "b", "y/1", False),
    # A prefix without a final "/" reaches the key it names and what lies
    # below it as a folder, never a longer name (a link to one object).
    ((ONE,), R, "docs", "a.txt", True),
    ((ONE,), R, "docs", "a.txt/inside", True),
    ((ONE,), R, "docs", "a.txt.bak", False),
    ((ONE,), R, "docs", "a.txt-old/draft", False),
    ((ONE,), L, "docs", "a.txt-old/", False),
    ((ONE,), L, "docs", "a.t", True),  # a wider listing, filtered by visible
    ((ONE,), R, "docs", "a.tx", False),
    ((Caveat(paths=(PathGrant("photos", "2024"),)),), W, "photos", "2024-12/a", False),
    ((Caveat(paths=(PathGrant("photos", "2024"),)),), W, "photos", "2024/12/a", True),
]


@pytest.mark.parametrize(("caveats", "op", "package", "path", "allowed"), TABLE)
def test_table(
    caveats: tuple[Caveat, ...], op: Operation, package: str | None, path: str | None, allowed: bool
) -> None:
    principal = Principal(1, None, caveats)
    assert allows(principal, op, package=package, path=path, at=NOW) is allowed


def test_refusals_say_which_rule() -> None:
    with pytest.raises(AccessDenied, match="forbids write"):
        authorize(ALICE.restricted(READ_ONLY), W, package="p", path="a", at=NOW)
    with pytest.raises(AccessDenied, match="expired"):
        authorize(ALICE.restricted(EXPIRED), R, package="p", path="a", at=NOW)
    with pytest.raises(AccessDenied, match="not valid before"):
        authorize(ALICE.restricted(NOT_YET), R, package="p", path="a", at=NOW)
    with pytest.raises(AccessDenied, match="does not reach package 'docs'"):
        authorize(ALICE.restricted(PHOTOS), R, package="docs", path="a", at=NOW)
    with pytest.raises(AccessDenied, match="does not reach photos/2023/a"):
        authorize(ALICE.restricted(PHOTOS_2024), R, package="photos", path="2023/a", at=NOW)


def test_project_scope() -> None:
    scoped = Principal(1, project_id=7)
    authorize(scoped, R, project_id=7, package="p", path="a", at=NOW)
    with pytest.raises(AccessDenied, match="another project"):
        authorize(scoped, R, project_id=8, package="p", path="a", at=NOW)
    authorize(ALICE, R, project_id=8, package="p", path="a", at=NOW)  # the whole account


def test_listing_filters() -> None:
    p = ALICE.restricted(PHOTOS_2024)
    assert visible(p, "photos", "2024/a") and not visible(p, "photos", "2023/a")
    assert not visible(p, "docs", "2024/a")
    assert visible_packages(p, ["docs", "photos", "zeta"]) == ["photos"]
    assert visible_packages(ALICE, ["docs", "photos"]) == ["docs", "photos"]
    one = ALICE.restricted(ONE)
    assert visible(one, "docs", "a.txt") and visible(one, "docs", "a.txt/x")
    assert not visible(one, "docs", "a.txt.bak") and not visible(one, "docs", "a.txt-old/x")


# --- adding a caveat never widens access ----------------------------------

names = st.sampled_from(["a", "b", "photos"])
prefixes = st.sampled_from(["", "x/", "x/y/", "2024/", "z"])
paths = st.one_of(st.none(), st.sampled_from(["", "x", "x/", "x/y/1", "2024/a", "z", "zz/q"]))
times = st.one_of(st.none(), st.integers(-3, 3).map(lambda h: NOW + timedelta(hours=h)))
caveats = st.builds(
    Caveat,
    disallow=st.frozensets(st.sampled_from(list(Operation))),
    paths=st.lists(st.builds(PathGrant, names, prefixes), max_size=3).map(tuple),
    not_before=times,
    not_after=times,
)
principals = st.builds(
    Principal,
    user_id=st.just(1),
    project_id=st.one_of(st.none(), st.integers(1, 3)),
    caveats=st.lists(caveats, max_size=3).map(tuple),
)


@given(
    principals,
    caveats,
    st.sampled_from(list(Operation)),
    st.one_of(st.none(), st.integers(1, 3)),
    st.one_of(st.none(), names),
    paths,
)
def test_a_caveat_never_widens_access(
    principal: Principal,
    extra: Caveat,
    op: Operation,
    project: int | None,
    package: str | None,
    path: str | None,
) -> None:
    where = {"project_id": project, "package": package, "path": path, "at": NOW}
    if allows(principal.restricted(extra), op, **where):
        assert allows(principal, op, **where)
    shown = package is not None and path is not None
    if shown and visible(principal.restricted(extra), package or "", path or ""):
        assert visible(principal, package or "", path or "")
