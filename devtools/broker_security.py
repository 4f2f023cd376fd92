"""What makes a local broker secured: a TLS certificate made with the JDK's `keytool`
(self-signed, nothing downloaded), SCRAM-SHA-512 users
created when the storage is formatted, and the listener and authorizer properties.

The client listener is SASL_SSL (SCRAM-SHA-512). Brokers and controllers talk to each
other over TLS with client certificates: the broker certificate's principal,
`User:kafka-broker`, is a super user, as is `User:admin` (for applying ACLs).
KRaft's `StandardAuthorizer` refuses everything no ACL allows.

`open_listener` adds a PLAINTEXT listener whose anonymous principal is a super user:
for the test harness only (the many tests that are not about security use it), never
for a cluster anyone else reaches.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from services.ops.acls import PRINCIPALS

BROKER_CN = "kafka-broker"
ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
VALID_DAYS = "30"
_PREPARING = threading.Lock()


def _keytool(*args: str) -> None:
    done = subprocess.run(["keytool", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"keytool {args[0]} failed: {done.stdout}{done.stderr}")


@dataclass
class Tls:
    """The broker's key pair and self-signed certificate (for 127.0.0.1 and localhost,
    server and client use) under `directory`, made once with keytool; its PEM is what
    clients and brokers trust (`ca_pem`)."""

    directory: Path
    password: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.p12"

    def make(self) -> Tls:
        password_file = self.directory / "keystore.password"
        if self.ca_pem.exists() and password_file.exists():
            self.password = password_file.read_text().strip()
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob("*"):
            stale.unlink()
        store = [
            "-keystore",
            str(self.keystore),
            "-storetype",
            "PKCS12",
            "-storepass",
            self.password,
        ]
        _keytool(
            "-genkeypair", "-alias", "broker", "-dname", f"CN={BROKER_CN}", "-keyalg", "RSA",
            "-keysize", "2048", "-validity", VALID_DAYS, "-ext", "SAN=ip:127.0.0.1,dns:localhost",
            "-ext", "EKU=serverAuth,clientAuth", *store,
        )  # fmt: skip
        _keytool("-exportcert", "-rfc", "-alias", "broker", "-file", str(self.ca_pem), *store)
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        return self


@dataclass
class BrokerSecurity:
    """Certificates, users and passwords of one local cluster, kept under `home`."""

    home: Path
    open_listener: bool = False
    users: dict[str, str] = field(default_factory=dict)  # SCRAM user -> password
    tls: Tls | None = None

    def prepare(self) -> BrokerSecurity:
        """Make (or reuse) the certificates and the users' passwords, stored 0600; once,
        however many nodes of a cluster ask at the same time."""
        with _PREPARING:
            if self.tls is None:
                self._prepare()
        return self

    def _prepare(self) -> None:
        self.tls = Tls(self.home / "tls").make()
        stored = self.home / "users.json"
        if stored.exists():
            self.users = json.loads(stored.read_text())
        else:
            names = [ADMIN, *PRINCIPALS.values()]
            self.users = {name: secrets.token_hex(16) for name in names}
            stored.touch(mode=0o600)
            stored.write_text(json.dumps(self.users, indent=2))
        secret_dir = self.home / "secrets"
        secret_dir.mkdir(parents=True, exist_ok=True)
        for name, password in self.users.items():
            path = secret_dir / f"{name}.password"
            path.touch(mode=0o600)
            path.write_text(password + "\n")

    def password_file(self, user: str) -> Path:
        return self.home / "secrets" / f"{user}.password"

    def scram_arguments(self) -> list[str]:
        """`kafka-storage format` arguments creating every user."""
        return [
            arg
            for name, password in self.users.items()
            for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
        ]

    def properties(self) -> str:
        """server.properties lines for the TLS, SASL and authorizer settings."""
        assert self.tls is not None  # noqa: S101 - prepare() first
        supers = [f"User:{BROKER_CN}", f"User:{ADMIN}"]
        if self.open_listener:
            supers.append("User:ANONYMOUS")  # test harness only: see the module's doc
        return "\n".join(
            [
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"listener.name.sasl_ssl.sasl.enabled.mechanisms={MECHANISM}",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.location={self.tls.keystore}",
                f"ssl.keystore.password={self.tls.password}",
                f"ssl.key.password={self.tls.password}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.tls.ca_pem}",
                "listener.name.internal.ssl.client.auth=required",
                "listener.name.controller.ssl.client.auth=required",
                "ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                f"super.users={';'.join(supers)}",
                "",
            ]
        )

    def client_env(self, user: str, bootstrap: str) -> dict[str, str]:
        """The `KAFKA_*` variables that connect a service or the CLI as `user`."""
        assert self.tls is not None  # noqa: S101 - prepare() first
        return {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
            "KAFKA_SSL_CA_LOCATION": str(self.tls.ca_pem),
        }
