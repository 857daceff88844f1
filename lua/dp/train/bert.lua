-- dp.train.bert: the model side of the BERT recipes: a config for a small seed-initialised BERT
-- or a Hugging Face checkpoint's, the checkpoint's weights loaded under a fresh head when its
-- label count differs, and the export of the fine-tuned model (LoRA merged) with its vocab.
local dp = require "dp"
local atomic = require "dp.util.atomic"

local M = {}

-- config(opts) -> a BertConfig table for num_labels classes, and whether a checkpoint's head fits.
-- opts: { model = dir } for a checkpoint, else { vocab_size, hidden_size, layers, heads,
-- max_length } (FFN 4 x hidden, no dropout: DP noise regularises enough at this size).
function M.config(opts, num_labels, id2label)
  local cfg
  if opts.model then
    cfg = dp.hf.config.read_bert_config(opts.model .. "/config.json")
  else
    cfg = { model_type = "bert", architectures = { "BertForSequenceClassification" }, vocab_size = opts.vocab_size,
            hidden_size = opts.hidden_size, num_hidden_layers = opts.layers, num_attention_heads = opts.heads,
            intermediate_size = 4 * opts.hidden_size, max_position_embeddings = opts.max_length,
            hidden_dropout_prob = 0, attention_probs_dropout_prob = 0 }
  end
  local head_fits = cfg.num_labels == num_labels
  -- What the exported weights are (a BertModel checkpoint gains a head here).
  cfg.num_labels, cfg.id2label, cfg.architectures = num_labels, id2label, { "BertForSequenceClassification" }
  return cfg, head_fits
end

-- load(model, dir, head_fits): the checkpoint's weights; the head only when it fits (else it stays
-- freshly initialised). Errors name the file and tensor (dp.hf.checkpoint).
function M.load(model, dir, head_fits)
  local named = model:named_parameters()
  if not head_fits then
    local keep = {}
    for _, p in ipairs(named) do if not p.name:find("^classifier%.") then keep[#keep + 1] = p end end
    named = keep
  end
  return dp.hf.checkpoint.load_into(named, dir)
end

-- export(model, dir, config, vocab_path): merges LoRA adapters (if any) into their weights and
-- writes dir/model.safetensors, config.json and vocab.txt (each atomically), loadable by
-- transformers' BertForSequenceClassification.
function M.export(model, dir, config, vocab_path)
  dp.nn.lora.merge(model)
  dp.hf.checkpoint.save(model, dir, { config = config })
  local f, err = io.open(vocab_path, "rb")
  if not f then error(("bert.export: cannot read %s: %s"):format(vocab_path, tostring(err)), 0) end
  local text = f:read("*a")
  f:close()
  atomic.write_string(dir .. "/vocab.txt", text, "bert.export")
end

return M
