-- Specs for dp.nn.bert_config: BertConfig's defaults, pass-through of other fields, and errors.
local bert_config = require "dp.nn.bert_config"

describe("dp.nn.bert_config", function()
  it("fills missing fields with transformers' BertConfig defaults (bert-base) and keeps the rest", function()
    local c = bert_config.check{ model_type = "bert", vocab_size = 100 }
    assert.are.equal(100, c.vocab_size)
    assert.are.equal(768, c.hidden_size)
    assert.are.equal(12, c.num_hidden_layers)
    assert.are.equal(3072, c.intermediate_size)
    assert.are.equal(512, c.max_position_embeddings)
    assert.are.equal(1e-12, c.layer_norm_eps)
    assert.are.equal(2, c.num_labels)
    assert.are.equal("bert", c.model_type)
  end)

  it("takes num_labels from id2label when only that is given", function()
    assert.are.equal(3, bert_config.check{ id2label = { ["0"] = "e", ["1"] = "n", ["2"] = "c" } }.num_labels)
  end)

  it("names the field and what was expected", function()
    assert.error_matches(function() bert_config.check{ num_hidden_layers = 2.5 } end,
      "num_hidden_layers must be a positive integer, got 2.5")
    assert.error_matches(function() bert_config.check{ attention_probs_dropout_prob = -0.1 } end,
      "attention_probs_dropout_prob must be a probability in %[0, 1%)")
    assert.error_matches(function() bert_config.check{ classifier_dropout = 2 } end, "classifier_dropout")
    assert.error_matches(function() bert_config.check{ initializer_range = 0 } end, "initializer_range must be a positive number")
  end)
end)
