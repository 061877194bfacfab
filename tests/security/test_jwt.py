"""JWTAuthenticator with real tokens: HS256 signed here, RS256 and ES256 checked against a
JWKS served over HTTP by a small local server."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from kronika.errors import ConfigurationError, Unauthorized, Unavailable
from kronika.server.principal import Role
from kronika.server.security import JWTAuthenticator

SECRET = "s" * 32
ISSUER = "https://issuer.example"
AUDIENCE = "kronika"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "roles": ["writer"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(secret: str = SECRET, **changes: Any) -> str:
    return jwt.encode(claims(**changes), secret, algorithm="HS256")


def hs_auth(**options: Any) -> JWTAuthenticator:
    return JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret=SECRET, **options)


async def test_a_valid_hs256_token_gives_its_principal() -> None:
    token = hs256(roles=["writer", "operator", "superuser"], kronika_categories=["orders"])
    principal = await hs_auth().authenticate(f"Bearer {token}")
    assert principal.name == "alice"
    assert principal.kind == "jwt"
    assert principal.roles == {Role.WRITER, Role.OPERATOR}  # unknown names are ignored
    assert principal.categories == {"orders"}
    assert principal.claims["iss"] == ISSUER


async def test_roles_and_categories_claims_are_configurable() -> None:
    token = hs256(roles=None, realm_access={"roles": ["admin"]}, cats="orders users")
    auth = hs_auth(roles_claim="realm_access.roles", categories_claim="cats")
    principal = await auth.authenticate(f"Bearer {token}")
    assert principal.roles == {Role.ADMIN}
    assert principal.categories == {"orders", "users"}
    no_roles = await hs_auth().authenticate(f"Bearer {hs256(roles=None)}")
    assert no_roles.roles == frozenset()
    assert no_roles.categories is None


async def test_a_roles_claim_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(Unauthorized, match="'roles' must be a list of names"):
        await hs_auth().authenticate(f"Bearer {hs256(roles={'a': 1})}")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exp": int(time.time()) - 3600}, r"token expired \(exp\)"),
        ({"nbf": int(time.time()) + 3600}, r"not valid yet \(nbf\)"),
        ({"iss": "https://evil.example"}, r"issuer \(iss\) is not accepted"),
        ({"aud": "another-service"}, r"audience \(aud\) is not accepted"),
        ({"exp": None}, "lacks the 'exp' claim"),
        ({"iss": None}, "lacks the 'iss' claim"),
        ({"aud": None}, "lacks the 'aud' claim"),
        ({"sub": None}, "lacks the 'sub' claim"),
    ],
)
async def test_claims_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        await hs_auth().authenticate(f"Bearer {hs256(**changes)}")


async def test_the_leeway_allows_bounded_clock_skew() -> None:
    now = int(time.time())
    skewed = hs256(exp=now - 10, nbf=now + 10)
    await hs_auth().authenticate(f"Bearer {skewed}")  # default leeway 30 s
    with pytest.raises(Unauthorized, match="not valid yet"):
        await hs_auth(leeway=5).authenticate(f"Bearer {skewed}")
    with pytest.raises(Unauthorized, match="expired"):
        await hs_auth(leeway=5).authenticate(f"Bearer {hs256(exp=now - 20)}")
    with pytest.raises(ConfigurationError, match="leeway"):
        hs_auth(leeway=301)


async def test_a_wrong_signature_is_refused() -> None:
    forged = hs256(secret="x" * 32)
    with pytest.raises(Unauthorized, match="signature is invalid"):
        await hs_auth().authenticate(f"Bearer {forged}")


async def test_the_none_algorithm_is_refused() -> None:
    unsigned = jwt.encode(claims(roles=["admin"]), None, algorithm="none")
    with pytest.raises(Unauthorized, match="algorithm 'none' is not accepted"):
        await hs_auth().authenticate(f"Bearer {unsigned}")


async def test_an_algorithm_other_than_the_configured_one_is_refused() -> None:
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS512")
    with pytest.raises(Unauthorized, match="algorithm 'HS512' is not accepted"):
        await hs_auth().authenticate(f"Bearer {token}")


@pytest.mark.parametrize("length", [0, 1, 16, 31])
def test_a_short_secret_is_refused_at_construction(length: int) -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret="k" * length)


def test_configuration_mistakes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ConfigurationError, match="exactly one"):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret=SECRET, jwks_url="http://x/jwks")
    with pytest.raises(ConfigurationError, match="issuer and an audience"):
        JWTAuthenticator(issuer="", audience=AUDIENCE, secret=SECRET)
    with pytest.raises(ConfigurationError, match="cannot be used"):
        JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, secret=SECRET, algorithms=["RS256"])
    with pytest.raises(ConfigurationError, match="cannot be used"):
        JWTAuthenticator(
            issuer=ISSUER, audience=AUDIENCE, jwks_url="http://x/jwks", algorithms=["HS256"]
        )


@pytest.mark.parametrize("header", ["Bearer not.a.jwt", "Bearer abc", "Bearer a.b"])
async def test_malformed_tokens_are_refused(header: str) -> None:
    with pytest.raises(Unauthorized, match="malformed token"):
        await hs_auth().authenticate(header)


# -- RS256 / ES256 via JWKS -------------------------------------------------------------------


class JWKSServer:
    """Serves a JWKS document over HTTP on a free local port, counting requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def jwks() -> Iterator[JWKSServer]:
    server = JWKSServer()
    yield server
    server.close()


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def publish(server: JWKSServer, private: Any, kid: str, alg: str) -> None:
    algorithm = RSAAlgorithm if alg.startswith(("RS", "PS")) else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    server.keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})


def jwks_auth(server: JWKSServer, **options: Any) -> JWTAuthenticator:
    return JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=server.url, **options)


async def test_rs256_and_es256_tokens_are_checked_against_the_jwks(jwks: JWKSServer) -> None:
    rsa_private, ec_private = rsa_key(), ec.generate_private_key(ec.SECP256R1())
    publish(jwks, rsa_private, "r1", "RS256")
    publish(jwks, ec_private, "e1", "ES256")
    auth = jwks_auth(jwks)
    rs = jwt.encode(claims(sub="svc-a"), rsa_private, algorithm="RS256", headers={"kid": "r1"})
    es = jwt.encode(claims(sub="svc-b"), ec_private, algorithm="ES256", headers={"kid": "e1"})
    assert (await auth.authenticate(f"Bearer {rs}")).name == "svc-a"
    assert (await auth.authenticate(f"Bearer {es}")).name == "svc-b"
    for _ in range(5):
        await auth.authenticate(f"Bearer {rs}")
    assert jwks.requests == 1  # the key set is cached


async def test_a_token_signed_by_another_key_is_refused(jwks: JWKSServer) -> None:
    publish(jwks, rsa_key(), "r1", "RS256")
    forged = jwt.encode(claims(), rsa_key(), algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(Unauthorized, match="signature is invalid"):
        await jwks_auth(jwks).authenticate(f"Bearer {forged}")


async def test_an_unknown_kid_is_refused_and_a_rotated_key_is_found(jwks: JWKSServer) -> None:
    publish(jwks, rsa_key(), "old", "RS256")
    auth = jwks_auth(jwks)
    rotated = rsa_key()
    token = jwt.encode(claims(), rotated, algorithm="RS256", headers={"kid": "new"})
    with pytest.raises(Unauthorized, match="no signing key"):
        await auth.authenticate(f"Bearer {token}")
    publish(jwks, rotated, "new", "RS256")
    fresh = jwks_auth(jwks)  # a new process; the old one refetches after its cooldown
    assert (await fresh.authenticate(f"Bearer {token}")).name == "alice"


async def test_hs256_with_the_public_key_as_secret_is_refused(jwks: JWKSServer) -> None:
    """The classic HS/RS confusion: sign HS256 with the RSA public key as the HMAC secret."""
    private = rsa_key()
    publish(jwks, private, "r1", "RS256")
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": "r1"}).encode()
    )
    payload = jwt.utils.base64url_encode(json.dumps(claims(roles=["admin"])).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha256).digest())
    token = (signing_input + b"." + signature).decode()
    with pytest.raises(Unauthorized, match="algorithm 'HS256' is not accepted"):
        await jwks_auth(jwks).authenticate(f"Bearer {token}")


async def test_an_unreachable_jwks_is_unavailable_not_unauthorized() -> None:
    server = JWKSServer()
    url = server.url
    server.close()
    auth = JWTAuthenticator(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, jwks_timeout=2)
    token = jwt.encode(claims(), rsa_key(), algorithm="RS256", headers={"kid": "r1"})
    with pytest.raises(Unavailable, match="cannot fetch the JWKS"):
        await auth.authenticate(f"Bearer {token}")
