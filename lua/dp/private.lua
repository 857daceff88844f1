-- dp.private{...}: DP-SGD training (see dp.privacy.private for the options).
return require "dp.privacy.private"
