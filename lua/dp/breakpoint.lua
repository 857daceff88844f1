-- dp.breakpoint(): open the REPL here with the caller's variables in scope (see dp.repl.breakpoint).
return require "dp.repl.breakpoint"
