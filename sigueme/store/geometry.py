"""A geometry column that works on PostGIS and on plain SQLite.

On PostgreSQL the column is a PostGIS ``geometry(TYPE, 4326)`` (GeoAlchemy2's type,
so it can carry a GiST index and take part in spatial SQL); values cross the wire as
EWKB (``ST_GeomFromEWKB`` / ``ST_AsEWKB``). On SQLite, which has no spatial extension
on PyPI, the column holds the same geometry as WKB bytes. Either way Python sees a
Shapely geometry in EPSG:4326 (lon, lat).
"""

from __future__ import annotations

from typing import Any

import shapely
from geoalchemy2 import Geometry
from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

SRID = 4326


class _to_geometry(FunctionElement[Any]):  # noqa: N801 - SQL function style
    inherit_cache = True

    def __init__(self, *clauses: Any, type_: Any = None) -> None:
        super().__init__(*clauses)
        if type_ is not None:
            self.type = type_


class _from_geometry(_to_geometry):  # noqa: N801
    inherit_cache = True


@compiles(_to_geometry)
def _to_geometry_plain(element: _to_geometry, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_to_geometry, "postgresql")
def _to_geometry_pg(element: _to_geometry, compiler: Any, **kw: Any) -> str:
    return f"ST_GeomFromEWKB({compiler.process(element.clauses, **kw)})"


@compiles(_from_geometry)
def _from_geometry_plain(element: _from_geometry, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_from_geometry, "postgresql")
def _from_geometry_pg(element: _from_geometry, compiler: Any, **kw: Any) -> str:
    return f"ST_AsEWKB({compiler.process(element.clauses, **kw)})"


class GeometryColumn(TypeDecorator[shapely.Geometry]):
    """A Shapely geometry in EPSG:4326, stored natively on PostGIS, as WKB on SQLite."""

    impl = LargeBinary
    cache_ok = True
    # Read by GeoAlchemy2's DDL hooks: no automatic index (the migration creates the
    # GiST index) and no AddGeometryColumn management.
    spatial_index = False
    use_typmod = None

    def __init__(self, geometry_type: str) -> None:
        super().__init__()
        self.geometry_type = geometry_type

    def load_dialect_impl(self, dialect: Dialect | None) -> TypeEngine[Any]:
        # GeoAlchemy2's DDL hooks ask without a dialect: this column needs none of their
        # management (the migration makes its GiST index), so it answers "not spatial".
        if dialect is not None and dialect.name == "postgresql":
            return dialect.type_descriptor(
                Geometry(geometry_type=self.geometry_type, srid=SRID, spatial_index=False)
            )
        return LargeBinary() if dialect is None else dialect.type_descriptor(LargeBinary())

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return _to_geometry(bindvalue)

    def column_expression(self, column: Any) -> ColumnElement[Any]:
        # Typed as this column, so results go through process_result_value.
        return _from_geometry(column, type_=self)

    def process_bind_param(self, value: shapely.Geometry | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return shapely.to_wkb(shapely.set_srid(value, SRID), include_srid=True)
        return shapely.to_wkb(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> shapely.Geometry | None:
        if value is None:
            return None
        data = getattr(value, "data", value)  # GeoAlchemy2 may wrap it in a WKBElement
        if isinstance(data, str):
            data = bytes.fromhex(data)
        return shapely.from_wkb(bytes(data))
