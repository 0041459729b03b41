"""What every other test relies on: the servers that scripts/test.sh provides."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis


@pytest.mark.postgis
async def test_postgres_is_15_or_newer(pg: asyncpg.Pool) -> None:
    version_num = int(await pg.fetchval("SHOW server_version_num"))
    assert version_num >= 150000, f"PostgreSQL {version_num} is older than 15"


@pytest.mark.postgis
async def test_postgis_3_is_installed(pg: asyncpg.Pool) -> None:
    full_version = await pg.fetchval("SELECT postgis_full_version()")
    assert 'POSTGIS="3.' in full_version, full_version


@pytest.mark.postgis
async def test_geography_distance_of_one_degree_of_latitude(pg: asyncpg.Pool) -> None:
    # Cuernavaca's longitude, one degree of latitude apart: about 110.6 km on WGS 84.
    metres = await pg.fetchval(
        "SELECT ST_Distance("
        "ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography,"
        "ST_SetSRID(ST_MakePoint($1, $3), 4326)::geography)",
        -99.2216,
        18.4,
        19.4,
    )
    assert 110_500 < metres < 110_700, metres


@pytest.mark.redis
async def test_redis_ping_set_get(redis_url: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.ping() is True
        key = f"sigueme:test:infrastructure:{uuid.uuid4().hex}"
        await client.set(key, "hola", ex=60)
        assert await client.get(key) == "hola"
        await client.delete(key)
    finally:
        await client.aclose()
