-- Specs for dp.nn.attention: multi-head self-attention against a naive per-head loop in Lua
-- numbers, per-example independence and padding invariance of the BERT encoder (f64, eval mode).
local dp = require "dp"
local nn = require "dp.nn"
local attention = require "dp.nn.attention"
local bert_config = require "dp.nn.bert_config"

local tiny = { vocab_size = 30, hidden_size = 8, num_hidden_layers = 2, num_attention_heads = 2,
               intermediate_size = 12, max_position_embeddings = 10, type_vocab_size = 2, num_labels = 3 }

local function ids(rows) return dp.tensor(rows, "i64") end

describe("dp.nn.attention", function()
  it("matches a naive per-head loop with the padding mask", function()
    local cfg = bert_config.check(tiny)
    local att = attention.BertSelfAttention.new{ config = cfg, dtype = "f64", rng = dp.rng(4) }
    for _, name in ipairs { "query", "key", "value" } do
      att[name].bias:copy(dp.randn({ 8 }, { seed = #name, dtype = "f64" }))
    end
    att:eval()
    local B, T, H, heads, hd = 2, 5, 8, 2, 4
    local x = dp.randn({ B, T, H }, { seed = 11, dtype = "f64" })
    local mask = { { 1, 1, 1, 1, 1 }, { 1, 1, 1, 0, 0 } }
    local got = att(x, attention.additive_mask(ids(mask), "f64")):totable()
    local xt = x:totable()
    local function project(name)
      local w, b, out = att[name].weight:totable(), att[name].bias:totable(), {}
      for i = 1, B do
        out[i] = {}
        for t = 1, T do
          out[i][t] = {}
          for o = 1, H do
            local s = b[o]
            for k = 1, H do s = s + xt[i][t][k] * w[o][k] end
            out[i][t][o] = s
          end
        end
      end
      return out
    end
    local q, k, v = project("query"), project("key"), project("value")
    for i = 1, B do
      for h = 0, heads - 1 do
        for t = 1, T do
          local scores, mx = {}, -math.huge
          for s = 1, T do
            if mask[i][s] == 1 then
              local dot = 0
              for d = 1, hd do dot = dot + q[i][t][h * hd + d] * k[i][s][h * hd + d] end
              scores[s] = dot / math.sqrt(hd)
              mx = math.max(mx, scores[s])
            end
          end
          local z = 0
          for s = 1, T do if scores[s] then scores[s] = math.exp(scores[s] - mx); z = z + scores[s] end end
          for d = 1, hd do
            local ref = 0
            for s = 1, T do if scores[s] then ref = ref + scores[s] / z * v[i][s][h * hd + d] end end
            local g = got[i][t][h * hd + d]
            assert.is_true(math.abs(g - ref) < 1e-12, ("example %d head %d pos %d dim %d: %.17g vs %.17g")
                           :format(i, h, t, d, g, ref))
          end
        end
      end
    end
  end)

  describe("in the encoder", function()
    local model = nn.BertModel(tiny, { dtype = "f64", seed = 3 }):eval()
    local base = { { 5, 6, 7, 8, 9, 0 }, { 11, 12, 13, 0, 0, 0 } }
    local mask = { { 1, 1, 1, 1, 1, 0 }, { 1, 1, 1, 0, 0, 0 } }
    local types = { { 0, 0, 1, 1, 1, 0 }, { 0, 1, 1, 0, 0, 0 } }
    local function run(rows, tt)
      local h, p = model{ input_ids = ids(rows), attention_mask = ids(mask), token_type_ids = ids(tt or types) }
      return h:totable(), p:totable()
    end
    local h0, p0 = run(base)

    it("keeps example 1's outputs bit-identical when example 2's input changes", function()
      local h1, p1 = run({ base[1], { 1, 2, 3, 4, 0, 0 } }, { types[1], { 1, 1, 0, 0, 0, 0 } })
      assert.are.same(h0[1], h1[1])
      assert.are.same(p0[1], p1[1])
      assert.are_not.same(h0[2], h1[2])
    end)

    it("leaves unpadded positions unchanged when token ids at padded positions change", function()
      local h1, p1 = run({ { 5, 6, 7, 8, 9, 29 }, { 11, 12, 13, 20, 21, 22 } })
      for i = 1, 2 do
        for t = 1, 6 do
          if mask[i][t] == 1 then
            for d = 1, 8 do assert.is_true(math.abs(h0[i][t][d] - h1[i][t][d]) <= 1e-13) end
          end
        end
        for d = 1, 8 do assert.is_true(math.abs(p0[i][d] - p1[i][d]) <= 1e-13) end
      end
      assert.are_not.same(h0[2][5], h1[2][5])  -- padded positions do change
    end)
  end)
end)
