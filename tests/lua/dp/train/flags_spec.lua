-- Specs for dp.train.flags: parsing, defaults, errors that name the flag, and merging a resumed
-- run's saved configuration.
local flags = require "dp.train.flags"

local spec = {
  { "epochs", "int", 3, "passes", min = 1 },
  { "lr", "number", 1e-3, "learning rate", above = 0 },
  { "out", "string", "out/x", "dir" },
  { "setup", "choice", nil, "what trains", choices = { "full", "lora" } },
  { "max_physical_batch_size", "int", 256, "micro-batch", min = 1 },
  { "resume", "string", nil, "dir" },
}

describe("dp.train.flags", function()
  describe("parse", function()
    it("fills defaults and marks nothing given", function()
      local cfg = assert(flags.parse(spec, {}))
      assert.equal(3, cfg.epochs)
      assert.equal(1e-3, cfg.lr)
      assert.is_nil(cfg.setup)
      assert.same({}, cfg.given)
    end)

    it("reads --name value, --name=value and dashed names", function()
      local cfg = assert(flags.parse(spec, { "--epochs", "7", "--lr=0.5", "--max-physical-batch-size", "64",
                                            "--setup", "lora" }))
      assert.equal(7, cfg.epochs)
      assert.equal(0.5, cfg.lr)
      assert.equal(64, cfg.max_physical_batch_size)
      assert.equal("lora", cfg.setup)
      assert.is_true(cfg.given.epochs and cfg.given.lr and cfg.given.setup)
      assert.is_nil(cfg.given.out)
    end)

    it("names an unknown flag and lists the known ones", function()
      local cfg, err = flags.parse(spec, { "--epoch", "2" })
      assert.is_nil(cfg)
      assert.matches("unknown flag --epoch (expected one of --epochs, --lr", err, 1, true)
    end)

    it("names a malformed value and what was expected", function()
      local _, err = flags.parse(spec, { "--epochs", "two" })
      assert.equal("flag --epochs expects an integer >= 1, got 'two'", err)
      _, err = flags.parse(spec, { "--epochs", "0" })
      assert.equal("flag --epochs expects an integer >= 1, got '0'", err)
      _, err = flags.parse(spec, { "--epochs", "2.5" })
      assert.equal("flag --epochs expects an integer >= 1, got '2.5'", err)
      _, err = flags.parse(spec, { "--lr", "-1" })
      assert.equal("flag --lr expects a number > 0, got '-1'", err)
      _, err = flags.parse(spec, { "--lr", "nan" })
      assert.equal("flag --lr expects a number > 0, got 'nan'", err)
      _, err = flags.parse(spec, { "--setup", "half" })
      assert.equal("flag --setup expects one of full, lora, got 'half'", err)
    end)

    it("says when a value is missing", function()
      local _, err = flags.parse(spec, { "--epochs" })
      assert.equal("flag --epochs needs a value (an integer >= 1)", err)
      _, err = flags.parse(spec, { "--out", "--epochs", "2" })
      assert.equal("flag --out needs a value (a non-empty value)", err)
    end)

    it("rejects positional arguments", function()
      local _, err = flags.parse(spec, { "epochs=2" })
      assert.equal("unexpected argument 'epochs=2' (flags look like --name value)", err)
    end)

    it("lists every flag in the usage text", function()
      local text = flags.usage(spec, "r.lua")
      for _, f in ipairs { "--epochs", "--lr", "--out", "--setup full|lora", "--max-physical-batch-size" } do
        assert.truthy(text:find(f, 1, true), f)
      end
    end)
  end)

  describe("merge_saved", function()
    local saved = { epochs = 3, lr = 0.01, out = "out/a", setup = "full", max_physical_batch_size = 256 }

    it("takes the saved configuration, keeping this run's own flags", function()
      local cfg = assert(flags.parse(spec, { "--resume", "out/a" }))
      local m = assert(flags.merge_saved(cfg, saved, { "resume", "out" }))
      assert.equal(0.01, m.lr)
      assert.equal("out/a", m.out)        -- not given: the saved one
      assert.equal("out/a", m.resume)
      cfg = assert(flags.parse(spec, { "--resume", "out/a", "--out", "out/b", "--epochs", "3" }))
      m = assert(flags.merge_saved(cfg, saved, { "resume", "out" }))
      assert.equal("out/b", m.out)
      assert.equal(3, m.epochs)           -- given but equal to the saved value
    end)

    it("refuses a flag that contradicts the checkpoint", function()
      local cfg = assert(flags.parse(spec, { "--resume", "x", "--epochs", "5" }))
      local m, err = flags.merge_saved(cfg, saved, { "resume", "out" })
      assert.is_nil(m)
      assert.equal("--epochs 5 differs from the checkpoint's 3; a resumed run keeps its configuration", err)
    end)
  end)
end)
