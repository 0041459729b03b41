"""Accounts over HTTP: ``/v1/me`` for everyone, ``/v1/users`` for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from sigueme.api.deps import AdminDep, PrincipalDep, SessionDep
from sigueme.api.trips import UNAUTHORIZED, Responses, _err
from sigueme.errors import Conflict
from sigueme.store import users as store
from sigueme.store.models import Role, Share, User

router = APIRouter(prefix="/v1", tags=["accounts"])

ADMINS: Responses = {**UNAUTHORIZED, 403: _err("Admins only.")}

UserName = Annotated[
    str,
    Path(min_length=1, max_length=100, description="The user's login name."),
]


class UserOut(BaseModel):
    """A user as admins see them."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    display_name: str | None
    contact: str | None
    profile: str | None
    disabled: bool
    created_at: datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[\w.@-]+$",
        description="Login name: letters, digits and . _ - @ (no spaces).",
        examples=["ana.lopez"],
    )
    role: Role
    display_name: str | None = Field(default=None, max_length=200)
    contact: str | None = Field(
        default=None, max_length=200, description="Phone or other contact, for dispatchers."
    )
    profile: str | None = Field(
        default=None,
        max_length=50,
        description="Who they are for the police: candidate, campaign, citizen, official, ...",
    )
    token_label: str | None = Field(
        default=None, max_length=100, description="A note on the first token (its device)."
    )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=100, description="e.g. the device.")


class NewToken(BaseModel):
    """A token, shown this once: the service keeps only its hash."""

    token: str = Field(description="Send it as Authorization: Bearer <token>.")


class CreatedUser(NewToken):
    user: UserOut


class DisabledUser(BaseModel):
    user: UserOut
    tokens_revoked: int


class Me(BaseModel):
    """Who the caller is."""

    kind: Literal["user", "link"]
    name: str
    role: Role | None = Field(description="None for a share link.")
    user_id: int | None = None
    display_name: str | None = None
    trip_id: str | None = Field(default=None, description="The trip a share link opens.")
    expires_at: datetime | None = Field(
        default=None, description="When a share link stops working (revocation aside)."
    )


@router.get("/me", response_model=Me, summary="Who am I", responses=UNAUTHORIZED)
async def me(principal: PrincipalDep, session: SessionDep) -> Me:
    """The caller: a user (name, role) or a share link (its label and trip)."""
    if principal.user_id is None:
        share = await session.get(Share, principal.share_id) if principal.share_id else None
        return Me(
            kind="link",
            name=principal.name,
            role=None,
            trip_id=principal.share_trip_id,
            expires_at=share.expires_at if share is not None else None,
        )
    user = await session.get(User, principal.user_id)
    return Me(
        kind="user",
        name=principal.name,
        role=principal.role,
        user_id=principal.user_id,
        display_name=user.display_name if user is not None else None,
    )


@router.get("/users", response_model=list[UserOut], summary="List users (admin)", responses=ADMINS)
async def list_users(_admin: AdminDep, session: SessionDep) -> list[UserOut]:
    """Every user, disabled ones too, by name."""
    return [UserOut.model_validate(u) for u in await store.list_users(session)]


@router.post(
    "/users",
    response_model=CreatedUser,
    status_code=201,
    summary="Create a user and their first token (admin)",
    responses={**ADMINS, 409: {"description": "The name is taken."}},
)
async def create_user(body: UserCreate, _admin: AdminDep, session: SessionDep) -> CreatedUser:
    """Create a user; the answer carries their API token, which is never shown again."""
    user, token = await store.add_user(
        session,
        body.name,
        body.role,
        display_name=body.display_name,
        contact=body.contact,
        profile=body.profile,
        token_label=body.token_label,
    )
    await session.commit()
    return CreatedUser(user=UserOut.model_validate(user), token=token)


@router.post(
    "/users/{name}/disable",
    response_model=DisabledUser,
    summary="Disable a user and revoke their tokens (admin)",
    responses={**ADMINS, 404: {"description": "No such user."}, 409: {"description": "Yourself."}},
)
async def disable_user(name: UserName, admin: AdminDep, session: SessionDep) -> DisabledUser:
    """Disable a user: none of their tokens works any more."""
    if name == admin.name:
        # An admin locking themselves out by mistake would need the CLI to recover.
        raise Conflict("you cannot disable yourself")
    user, revoked = await store.disable_user(session, name)
    await session.commit()
    return DisabledUser(user=UserOut.model_validate(user), tokens_revoked=revoked)


@router.post(
    "/users/{name}/tokens",
    response_model=NewToken,
    status_code=201,
    summary="Issue a new token for a user (admin)",
    responses={**ADMINS, 404: {"description": "No such user."}, 409: {"description": "Disabled."}},
)
async def new_token(
    name: UserName, _admin: AdminDep, session: SessionDep, body: TokenCreate | None = None
) -> NewToken:
    """A new API token for the user, shown this once; their other tokens keep working."""
    user = await store.get_user(session, name)
    token = await store.issue_token(session, user, body.label if body else None)
    await session.commit()
    return NewToken(token=token)
