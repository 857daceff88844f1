-- dp.train: pieces shared by training recipes: flags (command line), nli (data and accuracy),
-- bert (model config, loading, export), checkpoint (save and resume), metrics (metrics.jsonl),
-- progress (a bar on stderr) and plot (an SVG of the curves); each loads on first access.
return require("dp.lazy")("dp.train")
