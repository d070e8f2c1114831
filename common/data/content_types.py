"""Media types: parsing `type/subtype; k=v` strings, aliases, and Accept negotiation."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.errors import UnsupportedAccept

CSV = "text/csv"
LIBSVM = "text/libsvm"
RECORDIO = "application/x-recordio-protobuf"
JSON = "application/json"
JSONLINES = "application/jsonlines"
PARQUET = "application/x-parquet"

ALIASES = {
    "csv": CSV,
    "libsvm": LIBSVM,
    "text/x-libsvm": LIBSVM,
    "recordio-protobuf": RECORDIO,
    "application/x-recordio": RECORDIO,
    "parquet": PARQUET,
    "application/x-jsonlines": JSONLINES,
    "application/json-lines": JSONLINES,
    "application/jsonl": JSONLINES,
}


@dataclass(frozen=True)
class MediaType:
    """A canonical media type with lower-cased parameter names, e.g. text/csv;label_size=1."""

    name: str
    params: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def parse(cls, text: str) -> MediaType:
        parts = [p.strip() for p in text.split(";")]
        name = parts[0].lower()
        params: dict[str, str] = {}
        for part in parts[1:]:
            if not part:
                continue
            key, _, value = part.partition("=")
            # A bare `;verbose` means verbose=true.
            params[key.strip().lower()] = value.strip().strip('"') if value else "true"
        return cls(ALIASES.get(name, name), params)

    def flag(self, key: str) -> bool:
        return self.params.get(key, "false").lower() in ("true", "1", "yes")

    def __str__(self) -> str:
        return self.name


def negotiate_accept(header: str | None, supported: tuple[str, ...], default: str) -> MediaType:
    """Pick the response type: the first supported entry of the Accept list, `*/*` or none -> default."""
    if not header or not header.strip():
        return MediaType(default)
    for entry in header.split(","):
        media = MediaType.parse(entry)
        if media.name in ("*/*", ""):
            return MediaType(default, media.params)
        if media.name in supported:
            return media
    raise UnsupportedAccept(
        f"Accept '{header}' is not supported; use one of: {', '.join(supported)}."
    )
