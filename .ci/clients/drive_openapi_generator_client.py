"""Calls every operation through the Python client openapi-generator made
from the served document, against the running service. That client checks each answer against the document's schemas
(pydantic models, strict enums and formats), so an answer the document does
not describe fails here.

usage: drive_openapi_generator_client.py BASE_URL   (the generated package,
content_api_gen, on PYTHONPATH; the demo admin seeded)
"""

import sys
import uuid

import content_api_gen as api
from content_api_gen.rest import ApiException

DEMO_ADMIN = ("admin@example.com", "password123")


def client(base: str, token: str | None = None) -> api.ApiClient:
    return api.ApiClient(api.Configuration(host=base, access_token=token))


def etag(fetch, *args) -> str:
    return fetch(*args).headers["etag"]


def main() -> int:
    base = sys.argv[1]
    run = uuid.uuid4().hex[:10]
    email, password = f"generated-{run}@example.com", f"generated-{run}-password"
    phone = "+234803" + str(uuid.uuid4().int % 10**7).zfill(7)

    anonymous = api.UsersApi(client(base))
    me = anonymous.sign_up_user(api.SignupRequest(
        name="Generated Client", email=email, phone_number=phone,
        country="Nigeria", state="Lagos", password=password))
    login = anonymous.log_in_user(api.LoginRequest(email=email, password=password))
    signed_in = client(base, login.access_token)
    content, users = api.ContentApi(signed_in), api.UsersApi(signed_in)
    sessions, tokens = api.SessionsApi(signed_in), api.TokensApi(signed_in)
    operations = api.OperationsApi(signed_in)

    operations.get_service_info()
    operations.check_liveness()
    operations.check_readiness()
    operations.get_metrics()

    item = content.create_content(api.NewContentRequest(
        title=f"Generated {run}", content="Written by a generated client.", tags=["generated"]))
    assert content.get_content(item.id).title == item.title
    content.get_content_by_slug(item.slug)
    legacy = content.post_content(api.NewContentRequest(
        title=f"Legacy path {run}", content="Written through post-content."))
    content.list_content(limit=5)
    content.list_content(limit=5, tag=["generated"], user_id=me.id)
    content.list_tags()
    changed = content.update_content(
        item.id, api.ContentUpdateRequest(title=f"Changed {run}"),
        if_match=etag(content.get_content_with_http_info, item.id))
    assert changed.version == 2, changed.version
    content.replace_content(
        item.id, api.ContentUpdateRequest(title=f"Replaced {run}", content="A replacement body."),
        if_match=etag(content.get_content_with_http_info, item.id))
    content.list_revisions(item.id)
    content.get_revision(item.id, 1)
    restored = content.restore_revision(
        item.id, 1, if_match=etag(content.get_content_with_http_info, item.id))
    assert restored.title == f"Generated {run}", restored.title
    content.delete_content(legacy.id, if_match=etag(content.get_content_with_http_info, legacy.id))
    try:
        content.get_content(legacy.id)
        raise AssertionError("a deleted item was served")
    except ApiException as gone:
        assert gone.status == 404, gone.status

    users.get_user(me.id, contents_limit=3)
    users.list_users(limit=3)
    users.update_user(me.id, api.UserUpdateRequest(state="Oyo"),
                      if_match=etag(users.get_user_with_http_info, me.id))
    users.replace_user(me.id, api.UserUpdateRequest(state="Lagos"),
                       if_match=etag(users.get_user_with_http_info, me.id))
    new_password = password + "-2"
    users.change_password(me.id, api.PasswordChangeRequest(
        current_password=password, new_password=new_password))
    anonymous.request_password_reset(api.PasswordResetRequest(email=email))
    try:
        anonymous.confirm_password_reset(api.PasswordResetConfirmRequest(
            token="not-a-live-token", new_password=new_password + "-3"))
        raise AssertionError("a made-up reset token was taken")
    except ApiException as refused:
        assert refused.status == 400, refused.status

    again = anonymous.log_in_user(api.LoginRequest(email=email, password=new_password))
    sessions.list_sessions()
    sessions.refresh_token(api.RefreshRequest(refresh_token=again.refresh_token))
    token = tokens.create_token(api.MachineTokenRequest(name="generated", scopes=["content:write"]))
    tokens.list_tokens()
    tokens.revoke_token(token.id)

    admin_login = anonymous.log_in_user(api.LoginRequest(email=DEMO_ADMIN[0], password=DEMO_ADMIN[1]))
    admin = client(base, admin_login.access_token)
    webhooks, admin_api = api.WebhooksApi(admin), api.AdminApi(admin)
    hook = webhooks.create_webhook(api.WebhookRequest(
        url="https://hooks.example.com/generated", events=["content.created"]))
    assert hook.secret.startswith("whsec_")
    webhooks.list_webhooks()
    webhooks.get_webhook(hook.id)
    content.create_content(api.NewContentRequest(
        title=f"Evented {run}", content="Makes a webhook event."))
    deliveries = webhooks.list_webhook_deliveries(hook.id, limit=5)
    assert deliveries, "the create made a delivery"
    webhooks.redeliver_webhook_delivery(hook.id, deliveries[0].id)
    webhooks.update_webhook(hook.id, api.WebhookUpdateRequest(active=False))
    webhooks.delete_webhook(hook.id)
    api.UsersApi(admin).set_user_role(me.id, api.RoleRequest(role="user"))
    admin_api.get_cache_state()
    admin_api.list_audit_events(limit=5)
    admin_api.flush_cache()

    # Last, as each ends a credential: a session by id, the session itself,
    # the account (which needs one of its own live sessions).
    other = anonymous.log_in_user(api.LoginRequest(email=email, password=new_password))
    sessions.log_out_session(api.LogoutRequest(all=False))
    own = api.SessionsApi(client(base, other.access_token))
    listed = own.list_sessions()
    assert listed, "the second login is listed"
    third = anonymous.log_in_user(api.LoginRequest(email=email, password=new_password))
    others = [session.id for session in listed if not session.current]
    assert others, "the earlier logins are listed"
    own.delete_session(others[0])
    api.UsersApi(client(base, third.access_token)).delete_user(me.id)
    print("openapi-generator's Python client: every operation answered as the document says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
