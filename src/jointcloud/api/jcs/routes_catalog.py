"""Buckets (§1) and packages (§2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jointcloud.api.jcs import views
from jointcloud.api.jcs.deps import ID, Body, Ctx, CurrentPrincipal, QueryID
from jointcloud.api.jcs.envelope import ok
from jointcloud.errors import BadArgument

router = APIRouter()


class BucketCreate(Body):
    name: Any
    redundancy: Any = None


class BucketId(Body):
    bucketID: ID


class PackageCreate(Body):
    bucketID: ID
    name: Any
    redundancy: Any = None


class BucketUpdate(Body):
    bucketID: ID
    redundancy: Any = None


class PackageId(Body):
    packageID: ID


class PackageUpdate(Body):
    packageID: ID
    redundancy: Any = None


def _redundancy_given(body: Body) -> None:
    if "redundancy" not in body.model_fields_set:
        raise BadArgument("redundancy is required (a policy, or null for no default of its own)")


class PackageClone(Body):
    packageID: ID
    bucketID: ID
    name: Any


@router.post("/v1/bucket/create")
async def bucket_create(body: BucketCreate, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    b = await ctx.buckets.create(principal, body.name, body.redundancy)
    return ok({"bucket": views.bucket(b)})


@router.get("/v1/bucket/getByName")
async def bucket_get_by_name(name: str, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    return ok({"bucket": views.bucket(await ctx.buckets.get_by_name(principal, name))})


@router.get("/v1/bucket/listAll")
async def bucket_list(principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    return ok({"buckets": [views.bucket(b) for b in await ctx.buckets.list(principal)]})


@router.post("/v1/bucket/update")
async def bucket_update(body: BucketUpdate, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    """Change the bucket's default policy (null: none); the objects of its
    packages that inherit it are re-encoded in the background."""
    body.check_user(principal)
    _redundancy_given(body)
    b = await ctx.buckets.set_redundancy(principal, body.bucketID, body.redundancy)
    return ok({"bucket": views.bucket(b)})


@router.post("/v1/bucket/delete")
async def bucket_delete(body: BucketId, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.buckets.delete(principal, body.bucketID)
    return ok(None)


@router.post("/v1/package/create")
async def package_create(
    body: PackageCreate, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    body.check_user(principal)
    p = await ctx.packages.create(principal, body.bucketID, body.name, body.redundancy)
    return ok({"package": views.package(p)})


@router.get("/v1/package/get")
async def package_get(packageID: QueryID, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    return ok({"package": views.package(await ctx.packages.get(principal, packageID))})


@router.get("/v1/package/getByFullName")
async def package_get_by_full_name(
    bucketName: str, packageName: str, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    p = await ctx.packages.get_by_full_name(principal, bucketName, packageName)
    return ok({"package": views.package(p)})


@router.get("/v1/package/listBucketPackages")
async def package_list(bucketID: QueryID, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    pkgs = await ctx.packages.list(principal, bucketID)
    return ok({"packages": [views.package(p) for p in pkgs]})


@router.post("/v1/package/update")
async def package_update(
    body: PackageUpdate, principal: CurrentPrincipal, ctx: Ctx
) -> JSONResponse:
    """Change the package's policy (null: inherit the bucket's); its objects
    are re-encoded in the background."""
    body.check_user(principal)
    _redundancy_given(body)
    p = await ctx.packages.set_redundancy(principal, body.packageID, body.redundancy)
    return ok({"package": views.package(p)})


@router.post("/v1/package/delete")
async def package_delete(body: PackageId, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    await ctx.packages.delete(principal, body.packageID)
    return ok(None)


@router.post("/v1/package/clone")
async def package_clone(body: PackageClone, principal: CurrentPrincipal, ctx: Ctx) -> JSONResponse:
    body.check_user(principal)
    p = await ctx.packages.clone(principal, body.packageID, body.bucketID, body.name)
    return ok({"package": views.package(p)})
