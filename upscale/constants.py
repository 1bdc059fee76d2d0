"""Physical constants of the process formulas, without torch: shared by :mod:`upscale.physics` and the demo world."""

PAR_PER_SHORTWAVE = 0.45  # fraction of global radiation that is photosynthetically active
STEFAN_BOLTZMANN = 5.670374e-8  # W m-2 K-4
PSYCHROMETRIC_CONSTANT = 0.066  # kPa K-1 near sea level (FAO-56)
SHORTWAVE_ALBEDO = 0.23  # FAO-56 reference surface
PRIESTLEY_TAYLOR_ALPHA = 1.26  # wet surfaces (Priestley & Taylor 1972), see upscale.physics.priestley_taylor_et
