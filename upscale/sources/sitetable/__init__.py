"""A user's own site table: (site, time) rows from CSV, Parquet or NetCDF as the canonical site Dataset.

Many users already have their site data extracted (their own archive, FluxDataKit, a colleague's
table). ``sites: {source: table, table: PATH, site_list: PATH, columns: {...}}`` reads such a table:
one row per site and time stamp, columns named by their canonical names (see
:mod:`upscale.variables`) or mapped with ``columns: {canonical: column}``. Units are checked
where the file declares them (NetCDF and Parquet ``units`` attributes, ``name [units]`` CSV
headers) and every value against the variable's valid range, so a temperature in K or a GPP in
umol m-2 s-1 is refused, not learned.

Time stamps are *daily* (every stamp at midnight and consecutive rows of a site mostly one day
apart) or *irregular* (e.g. satellite overpasses): daily tables get a full daily time axis,
irregular ones the sorted union of their stamps (``attrs['time_sampling']``).
"""

from upscale.sources.sitetable.predictors import site_predictors
from upscale.sources.sitetable.reader import DAILY, IRREGULAR, read_site_table, time_sampling
from upscale.sources.sitetable.units import normalise_units

#: The predictors entry of a recipe whose variables are read from the site table (and ``sites.source``).
TABLE_ENTRY = "table"

__all__ = [
    "DAILY",
    "IRREGULAR",
    "TABLE_ENTRY",
    "normalise_units",
    "read_site_table",
    "site_predictors",
    "time_sampling",
]
