"""Deterministic catalogues of Siesa item rows (``API_v2_Items``) for the simulator.

Every row depends only on (seed, rowid), so the same arguments always give the same
rows and a longer catalogue extends a shorter one. About one name in ten holds
legitimate but "tricky" text (``&``, quotes, ``#``, ``--``, ``;``, ``SELECT``...).
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

logger = logging.getLogger(__name__)

ITEM_FIELDS: tuple[str, ...] = (
    "f120_id_cia",
    "f120_rowid",
    "f120_id_item",
    "f120_referencia",
    "f120_descripcion",
    "f120_descripcion_comercial",
    "f120_id_grupo",
    "f120_codigo_barras",
    "f120_unidad_medida",
    "f120_ind_estado",
    "f120_peso",
    "f120_volumen",
    "f120_fecha_actualizacion",
)

GROUPS: tuple[int, ...] = (10, 11, 12, 20, 21, 35, 40)
UNITS: tuple[str, ...] = ("UND", "UND", "UND", "UND ", "UN   ", "MT", "MT  ", "KG", "KG   ")
DATE_FORMAT = "%Y%m%d%H%M%S"
_FIRST_DATE = datetime(2024, 1, 1)  # Siesa dates are naive local times
_DATE_SPAN_S = 730 * 24 * 3600
MAX_DESCRIPTION = 200

# Each family: product words, then qualifier, variant and size choices ("" = none).
_FAMILIES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (
        ("CAMISA OXFORD", "CAMISETA BASICA", "PANTALON DRILL", "JEAN CLASICO", "POLO PIQUE"),
        ("MANGA LARGA", "MANGA CORTA", "SLIM FIT", "PARA DAMA", "PARA NIÑO", ""),
        ("AZUL", "NEGRO", "BLANCO", "ROJO", "GRIS", "CAQUI", "BEIGE"),
        ("S", "M", "L", "XL", "T32", "T34", "T36"),
    ),
    (
        ("CHAQUETA IMPERMEABLE", "MEDIAS DEPORTIVAS", "GORRA BORDADA", "TENIS RUNNING"),
        ("UNISEX", "PARA NIÑA", "EDICION ESPECIAL", ""),
        ("NEGRO", "VERDE OLIVA", "AZUL MARINO", "BLANCO"),
        ("TALLA UNICA", "T38", "T40", "M", "L"),
    ),
    (
        (
            "CAFE MOLIDO",
            "ARROZ BLANCO",
            "PANELA PULVERIZADA",
            "CHOCOLATE DE MESA",
            "AVENA EN HOJUELAS",
        ),
        ("LA COSECHA", "ANDINO", "MONTAÑA", "CARIBE", "SOL"),
        ("ORIGINAL", "TRADICIONAL", "ORGANICO", ""),
        ("250G", "500G", "1KG", "2.5KG"),
    ),
    (
        ("ACEITE VEGETAL", "JABON LIQUIDO", "CREMA DENTAL", "DESODORANTE ROLL-ON", "SUAVIZANTE"),
        ("BRILLO", "FRESCURA", "ANDINO", "CARIBE"),
        ("NATURAL", "LAVANDA", "MENTA", "SIN AROMA", ""),
        ("90G", "250ML", "400ML", "1L", "3L"),
    ),
    (
        ("TORNILLO AUTOPERFORANTE", "BOMBILLO LED", "CABLE ELECTRICO", "PINTURA VINILO", "BROCHA"),
        ("9W", "12W", "CALIBRE 12", "1/2 PULG", "TIPO 1", "CERDA NATURAL"),
        ("BLANCO", "NEGRO", "LUZ CALIDA", "LUZ FRIA", ""),
        ("UNIDAD", "CAJA X100", "GALON", "ROLLO 100M", "CUARTO"),
    ),
    (
        ("OLLA A PRESION", "SARTEN ANTIADHERENTE", "TOALLA DE MANO", "SABANA ALGODON", "CUADERNO"),
        ("ACERO INOXIDABLE", "200 HILOS", "ARGOLLADO", "DOBLE FAZ", ""),
        ("GRIS", "BLANCO", "ROJO", "ESTAMPADO", ""),
        ("4L", "24CM", "50x90CM", "SENCILLA", "100 HOJAS"),
    ),
)
_BRANDS = ("BRILLO", "SOL", "ANDINO", "LA COSECHA", "MONTAÑA", "CARIBE")

# Legitimate product names that trip naive escaping or "SQL injection" filters.
_TRICKY = (
    'SHAMPOO & ACONDICIONADOR "{brand}" 400ML',
    "TUBO PVC 20x30 #{n} - SELECT",
    "CINTA AISLANTE -- NEGRA; ROLLO 20M",
    'TORNILLO DRYWALL #6 x 1" CAJA X{n}',
    'CAMISETA "UNION" ESTAMPADA TALLA {size}',
    "JUEGO Drop & Go PARA NIÑOS",
    "ETIQUETA ADHESIVA 20x30 MM; ROLLO X{n}",
    "CAJA ORGANIZADORA 20x30x15 CM -- TAPA {colour}",
    "PLATO HONDO 'SELECT' PORCELANA #{n}",
    'UNION PVC 1/2" PRESION & SOLDADURA',
)


def gtin_check_digit(body: str) -> int:
    """The GS1 check digit for ``body`` (every digit but the last, of any GTIN length)."""
    if not body.isdigit():
        raise ValueError("a GTIN body has only digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def ean13_check_digit(body: str) -> int:
    """The EAN-13 check digit of a 12-digit body."""
    if len(body) != 12:
        raise ValueError("an EAN-13 body has 12 digits")
    return gtin_check_digit(body)


def is_valid_gtin(code: str) -> bool:
    """True for an EAN-8, UPC-A (12), EAN-13 or GTIN-14 code with a correct check digit."""
    if len(code) not in (8, 12, 13, 14) or not code.isdigit():
        return False
    return gtin_check_digit(code[:-1]) == int(code[-1])


def with_check_digit(body: str) -> str:
    """``body`` followed by its GS1 check digit."""
    return body + str(gtin_check_digit(body))


def _barcode(rng: random.Random, seed: int, rowid: int) -> str | None:
    """Mostly EAN-13, some EAN-8, some UPC-A, some null; unique per (seed, rowid)."""
    roll = rng.random()
    if roll < 0.10:
        return None
    if roll < 0.18:
        return with_check_digit(f"77{rowid % 10**5:05d}")
    if roll < 0.28:
        return with_check_digit(f"0{seed % 10:01d}{rowid % 10**9:09d}")
    return with_check_digit(f"770{seed % 10:01d}{rowid % 10**8:08d}")


def _plain_name(rng: random.Random) -> str:
    family = rng.choice(_FAMILIES)
    return " ".join(word for word in (rng.choice(choices) for choices in family) if word)


def _tricky_name(rng: random.Random) -> str:
    return rng.choice(_TRICKY).format(
        brand=rng.choice(_BRANDS),
        n=rng.randint(2, 200),
        size=rng.choice(("S", "M", "L", "XL")),
        colour=rng.choice(("ROJA", "AZUL", "NEGRA")),
    )


def _commercial_name(rng: random.Random, name: str) -> str | None:
    roll = rng.random()
    if roll < 0.15:
        return None
    if roll < 0.25:
        return ""
    words = (w if any(c.isdigit() for c in w) else w.capitalize() for w in name.split(" "))
    return " ".join(words)


def generate_item(company: int, seed: int, rowid: int) -> dict[str, Any]:
    """One item row; depends only on (seed, rowid), ``company`` only fills f120_id_cia."""
    rng = random.Random(f"siesa-item:{seed}:{rowid}")  # noqa: S311 - test data, not secrets
    referencia = f"SKU-{seed}-{rowid:06d}"
    if rng.random() < 0.15:
        referencia += " " * rng.randint(1, 6)
    name = (_tricky_name(rng) if rng.random() < 0.10 else _plain_name(rng))[:MAX_DESCRIPTION]
    peso = round(rng.uniform(0.01, 50.0), 3) if rng.random() < 0.85 else None
    volumen = round(rng.uniform(0.0001, 0.5), 4) if rng.random() < 0.80 else None
    updated = _FIRST_DATE + timedelta(seconds=rng.randrange(_DATE_SPAN_S))
    return {
        "f120_id_cia": company,
        "f120_rowid": rowid,
        "f120_id_item": 100_000 + rowid,
        "f120_referencia": referencia,
        "f120_descripcion": name,
        "f120_descripcion_comercial": _commercial_name(rng, name),
        "f120_id_grupo": rng.choice(GROUPS),
        "f120_codigo_barras": _barcode(rng, seed, rowid),
        "f120_unidad_medida": rng.choice(UNITS),
        "f120_ind_estado": 1 if rng.random() < 0.9 else 0,
        "f120_peso": peso,
        "f120_volumen": volumen,
        "f120_fecha_actualizacion": updated.strftime(DATE_FORMAT),
    }


def generate_items(
    company: int, count: int, seed: int, start_rowid: int = 1
) -> list[dict[str, Any]]:
    """``count`` item rows with rowids ``start_rowid``.., referencias ``SKU-{seed}-{rowid:06d}``."""
    if count < 0:
        raise ValueError("count must not be negative")
    rows = [
        generate_item(company, seed, rowid) for rowid in range(start_rowid, start_rowid + count)
    ]
    logger.debug("generated %d items for company %d (seed %d)", count, company, seed)
    return rows
