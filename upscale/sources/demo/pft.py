"""The plant functional types of the demo world: their land-model parameters and climate niches."""

from __future__ import annotations

import numpy as np

# code: (fapar_max, eps [g C MJ-1], T_opt [degC], T_green [degC], green_min, W_max [mm])
PFT_PARAMS = {
    1: (0.80, 1.30, 16.0, 3.0, 0.45, 150.0),  # ENF
    2: (0.92, 1.65, 27.0, 10.0, 0.85, 200.0),  # EBF
    4: (0.88, 1.85, 21.0, 7.0, 0.08, 170.0),  # DBF
    5: (0.85, 1.60, 19.0, 5.0, 0.30, 160.0),  # MF
    7: (0.35, 1.20, 25.0, 5.0, 0.15, 100.0),  # OSH
    8: (0.65, 1.50, 26.0, 8.0, 0.35, 160.0),  # WSA
    9: (0.55, 1.40, 27.0, 8.0, 0.20, 130.0),  # SAV
    10: (0.65, 1.50, 22.0, 5.0, 0.05, 120.0),  # GRA
    12: (0.82, 2.10, 23.0, 8.0, 0.05, 140.0),  # CRO
}
#: IGBP codes of the PFTs of the demo world.
PFT_CODES = tuple(PFT_PARAMS)

# Climate niches for the PFT map: (code, annual mean T [degC], annual P [mm], weight).
PFT_NICHES = [
    (1, -1.0, 450.0, 1.0),
    (1, 6.0, 900.0, 0.4),
    (2, 25.5, 2600.0, 1.2),
    (2, 18.0, 1700.0, 0.5),
    (4, 11.0, 900.0, 0.9),
    (5, 6.0, 700.0, 0.7),
    (7, 22.0, 120.0, 1.2),
    (7, -11.0, 280.0, 1.0),
    (7, 8.0, 150.0, 0.8),
    (8, 23.0, 1350.0, 0.9),
    (9, 25.0, 850.0, 1.0),
    (10, 8.0, 380.0, 1.0),
    (10, 20.0, 450.0, 0.6),
    (12, 13.0, 700.0, 1.3),
]

#: How site names call each PFT.
PFT_SITE_WORDS = {
    1: "Pine Forest",
    2: "Rainforest",
    4: "Deciduous Forest",
    5: "Mixed Forest",
    7: "Shrubland",
    8: "Woodland",
    9: "Savanna",
    10: "Grassland",
    12: "Cropland",
}


def pft_table(index: int) -> np.ndarray:
    """Parameter ``index`` of :data:`PFT_PARAMS` as a lookup array over IGBP codes 0..16."""
    table = np.zeros(17)
    for code, params in PFT_PARAMS.items():
        table[code] = params[index]
    return table
