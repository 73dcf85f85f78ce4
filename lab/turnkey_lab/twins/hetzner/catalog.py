"""The fixed part of the world: locations, server types and system images (a small plausible catalogue).

Figures follow Hetzner's public price list of 2025 (EUR, without VAT); close enough for a lab, not a quote.
"""

from __future__ import annotations

LOCATIONS = [
    {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE", "city": "Falkenstein",
     "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"},
    {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE", "city": "Nuremberg",
     "latitude": 49.452102, "longitude": 11.076665, "network_zone": "eu-central"},
    {"id": 3, "name": "hel1", "description": "Helsinki DC Park 1", "country": "FI", "city": "Helsinki",
     "latitude": 60.169855, "longitude": 24.938379, "network_zone": "eu-central"},
]

# (id, name, description, cores, memory GB, disk GB, cpu_type, monthly EUR net)
_TYPES = [
    (22, "cx22", "CX22", 2, 4.0, 40, "shared", "3.79"),
    (23, "cx32", "CX32", 4, 8.0, 80, "shared", "6.80"),
    (9, "cpx21", "CPX 21", 3, 4.0, 80, "shared", "7.55"),
]


def _price(monthly: str, location: str) -> dict:
    net = float(monthly)

    def money(value: float) -> dict:
        return {"net": f"{value:.10f}", "gross": f"{value * 1.19:.10f}"}

    return {"location": location, "price_hourly": money(net / 730), "price_monthly": money(net),
            "included_traffic": 21990232555520, "price_per_tb_traffic": money(1.0)}


SERVER_TYPES = [
    {"id": ident, "name": name, "description": description, "cores": cores, "memory": memory, "disk": disk,
     "deprecated": False, "deprecation": None, "storage_type": "local", "cpu_type": cpu, "category": "cost_optimized",
     "architecture": "x86", "prices": [_price(monthly, loc["name"]) for loc in LOCATIONS],
     "locations": [{"id": loc["id"], "name": loc["name"], "deprecation": None, "recommended": True,
                    "available": True} for loc in LOCATIONS]}
    for ident, name, description, cores, memory, disk, cpu, monthly in _TYPES
]

_CREATED = "2024-04-25T12:00:00+00:00"
SYSTEM_IMAGES = [
    {"id": 161547269, "type": "system", "status": "available", "name": "ubuntu-24.04", "description": "Ubuntu 24.04",
     "image_size": None, "disk_size": 5, "created": _CREATED, "created_from": None, "bound_to": None,
     "os_flavor": "ubuntu", "os_version": "24.04", "rapid_deploy": True, "protection": {"delete": False},
     "deprecated": None, "deleted": None, "labels": {}, "architecture": "x86"},
    {"id": 114690389, "type": "system", "status": "available", "name": "debian-12", "description": "Debian 12",
     "image_size": None, "disk_size": 5, "created": "2023-06-13T06:00:00+00:00", "created_from": None,
     "bound_to": None, "os_flavor": "debian", "os_version": "12", "rapid_deploy": True,
     "protection": {"delete": False}, "deprecated": None, "deleted": None, "labels": {}, "architecture": "x86"},
]


def lookup(items: list[dict], id_or_name: object) -> dict | None:
    """By ID (int or digits) or by name, as the API accepts both."""
    for item in items:
        if str(item["id"]) == str(id_or_name) or item.get("name") == id_or_name:
            return item
    return None
