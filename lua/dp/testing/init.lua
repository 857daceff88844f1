-- dp.testing: test helpers (dp.testing.gradcheck, ...), loaded on first access.
return require("dp.lazy")("dp.testing")
