-- dp.train.nli: the data side of NLI recipes: the synthetic set (generated once into a directory,
-- with its vocab) or an SNLI-format directory, tokenised as BERT sentence pairs (cached beside
-- the data), as dp datasets; and accuracy on a split in evaluation mode without autograd.
--
--   local dir, vocab = nli.synthetic(out .. "/data", { seed = 1, train = 50000 })
--   local splits = nli.load(dir, tokenizer, { max_length = 32, cache_dir = out .. "/cache" })
--   -- splits.train / .dev / .test: { input_ids, token_type_ids, attention_mask (B, T) i64,
--   --                                  labels (B) i64, n, dropped, path }
--   local acc = nli.accuracy(model, splits.dev)
local dp = require "dp"
local snli = require "dp.data.snli"
local synthetic = require "dp.data.synthetic_nli"
local json = require "dp.util.json"
local atomic = require "dp.util.atomic"

local M = {}

local exists = require("dp.util.fs").exists

-- mkdir -p without a shell.
function M.mkdirs(path, what)
  local prefix = path:sub(1, 1) == "/" and "/" or ""
  for part in path:gmatch("[^/]+") do
    prefix = prefix .. part
    if part ~= "." and part ~= ".." then atomic.ensure_dir(prefix, what) end
    prefix = prefix .. "/"
  end
end

-- synthetic(dir, {seed, train, dev, test}) -> dir, vocab path. Writes the three splits and
-- vocab.txt unless dir already holds a set made with the same options (meta.json, written last).
function M.synthetic(dir, opts)
  local meta = json.encode({ generator = "dp.data.synthetic_nli", seed = opts.seed, train = opts.train,
                             dev = opts.dev, test = opts.test })
  local meta_path, vocab = dir .. "/meta.json", dir .. "/vocab.txt"
  local f = io.open(meta_path, "rb")
  if f then
    local old = f:read("*a")
    f:close()
    if old == meta and exists(vocab) then return dir, vocab end
  end
  M.mkdirs(dir, "nli.synthetic")
  local s = synthetic.generate{ seed = opts.seed, train = opts.train, dev = opts.dev, test = opts.test }
  synthetic.write(dir, s)
  synthetic.write_vocab(vocab, synthetic.vocab(s))
  atomic.write_string(meta_path, meta, "nli.synthetic")
  return dir, vocab
end

-- Tokenise one split as Lua arrays (what the cache stores): flat (n * T) ids, types and mask,
-- labels, n, T (the split's longest pair, at most max_length).
local function encode_split(tok, d, max_length)
  local encs, T = {}, 1
  local opts = { max_length = max_length, padding = false }
  for i = 1, #d.premises do
    encs[i] = tok:encode(d.premises[i], d.hypotheses[i], opts)
    T = math.max(T, #encs[i].input_ids)
  end
  local ids, types, mask, pad = {}, {}, {}, tok.pad_id
  for i, e in ipairs(encs) do
    local base, len = (i - 1) * T, #e.input_ids
    for t = 1, T do
      local inside = t <= len
      ids[base + t] = inside and e.input_ids[t] or pad
      types[base + t] = inside and e.token_type_ids[t] or 0
      mask[base + t] = inside and 1 or 0
    end
  end
  local labels = {}
  for i, l in ipairs(d.labels) do labels[i] = l end
  return { input_ids = ids, token_type_ids = types, attention_mask = mask, labels = labels, n = #encs, T = T }
end

-- load(dir, tokenizer, {max_length = 32, cache_dir = nil, splits = {"train","dev","test"}}) ->
-- { train =, dev =, test = } as in the header. Reading errors name the file and line
-- (dp.data.snli); an empty split is an error naming its file.
function M.load(dir, tok, opts)
  opts = opts or {}
  local max_length = opts.max_length or 32
  local out = {}
  local raw = snli.read_dir(dir, { splits = opts.splits })
  for _, split in ipairs(opts.splits or { "train", "dev", "test" }) do
    local d = raw[split]
    if #d.premises == 0 then error(("nli.load: %s has no labelled examples"):format(d.path), 0) end
    local build = function() return encode_split(tok, d, max_length) end
    local e
    if opts.cache_dir then
      M.mkdirs(opts.cache_dir, "nli.load")
      e = tok:cached(("%s/%s-%d.cache"):format(opts.cache_dir, split, max_length), d.path, max_length, build)
    else
      e = build()
    end
    local shape = { e.n, e.T }
    out[split] = {
      input_ids = dp.from_f64(e.input_ids, shape, "i64"),
      token_type_ids = dp.from_f64(e.token_type_ids, shape, "i64"),
      attention_mask = dp.from_f64(e.attention_mask, shape, "f32"),
      labels = dp.from_f64(e.labels, { e.n }, "i64"),
      n = e.n, dropped = d.dropped, path = d.path,
    }
  end
  return out
end

-- The dp.data.tensors dataset of a loaded split (what dp.private samples from).
function M.dataset(split)
  return dp.data.tensors{ input_ids = split.input_ids, token_type_ids = split.token_type_ids,
                          attention_mask = split.attention_mask, labels = split.labels }
end

-- Number of rows where argmax(logits) equals labels (no autograd).
function M.correct(logits, labels)
  return dp.no_grad(function()
    local pred, gold = logits:argmax(2):totable(), labels:totable()
    local hits = 0
    for i = 1, #pred do if pred[i] == gold[i] then hits = hits + 1 end end
    return hits
  end)
end

-- accuracy(model, split, batch_size = 512): in eval mode (no dropout) and without autograd; the
-- model's training flag is restored afterwards.
function M.accuracy(model, split, batch_size)
  batch_size = batch_size or 512
  local was_training = model.training ~= false
  model:eval()
  local ok, hits = pcall(dp.no_grad, function()
    local total = 0
    for i = 1, split.n, batch_size do
      local m = math.min(batch_size, split.n - i + 1)
      local logits = model:forward{ input_ids = split.input_ids:narrow(1, i, m),
                                    token_type_ids = split.token_type_ids:narrow(1, i, m),
                                    attention_mask = split.attention_mask:narrow(1, i, m) }
      total = total + M.correct(logits, split.labels:narrow(1, i, m))
    end
    return total
  end)
  model:train(was_training)
  if not ok then error(hits, 0) end
  return hits / split.n
end

return M
