-- dp.util: small helpers (dp.util.json, ...), loaded on first access.
return require("dp.lazy")("dp.util")
