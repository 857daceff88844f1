-- dp.privacy: privacy accounting (dp.privacy.accountant); clipping and noise join it with the
-- DP-SGD engine. Submodules load on first access.
return require("dp.lazy")("dp.privacy")
