"""The trust boundary between tenants: a record names its tenant twice, in its key
(`<tenant>/<id>`, which also picks its partition) and in its value. Both must agree
before a stage acts on it: otherwise anyone able to write a topic could have one
tenant's record loaded into another tenant's target with that tenant's credentials.
The transformer and the loader both check, so a forged raw or canonical record is
dead-lettered (`error.class=tenant_mismatch`) and never reaches a target.
"""

from __future__ import annotations

from services.common.errors import SkippableError
from services.common.tenants import tenant_of_key


class TenantMismatch(SkippableError):
    error_class = "tenant_mismatch"


def check_tenant(key: bytes | None, tenant: str) -> None:
    """Raise TenantMismatch unless `key` names `tenant`, the tenant of the value."""
    keyed = tenant_of_key(key)
    if keyed != tenant:
        shown = key.decode(errors="replace") if key is not None else None
        raise TenantMismatch(
            f"key {shown!r} names tenant {keyed!r} but the record's value names tenant "
            f"{tenant!r}: refused, a record never crosses tenants",
            tenant=keyed or tenant,
        )
