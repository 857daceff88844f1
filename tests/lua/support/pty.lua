-- A pseudo-terminal driver for specs (Linux, LuaJIT FFI): start a program on a new pty, type
-- keys, read what it wrote (escape sequences stripped) until some text appears or a timeout.
local ffi = require "ffi"

pcall(ffi.cdef, [[
int posix_openpt(int flags);
int grantpt(int fd);
int unlockpt(int fd);
char *ptsname(int fd);
int fork(void);
int setsid(void);
int open(const char *path, int flags, ...);
int close(int fd);
int dup2(int a, int b);
int ioctl(int fd, unsigned long request, ...);
int execve(const char *path, char *const argv[], char *const envp[]);
void _exit(int status);
long read(int fd, void *buf, size_t n);
long write(int fd, const void *buf, size_t n);
int kill(int pid, int sig);
int waitpid(int pid, int *status, int options);
struct dprun_pollfd { int fd; short events; short revents; };
int poll(struct dprun_pollfd *fds, unsigned long n, int timeout);
]])
pcall(ffi.cdef, "struct dprun_winsize { unsigned short rows, cols, x, y; };")

local C = ffi.C
local O_RDWR, O_NOCTTY, TIOCSCTTY, TIOCSWINSZ = 2, 256, 0x540E, 0x5414

local M = {}
local Pty = {}
Pty.__index = Pty

-- Start argv (a list, argv[1] the program path) with env (a list of "K=V") on a new terminal.
function M.spawn(argv, env)
  local master = C.posix_openpt(O_RDWR + O_NOCTTY)
  assert(master >= 0, "posix_openpt failed")
  assert(C.grantpt(master) == 0 and C.unlockpt(master) == 0, "grantpt/unlockpt failed")
  local slave_name = ffi.string(C.ptsname(master))
  local ws = ffi.new("struct dprun_winsize", { 24, 100, 0, 0 })
  -- Everything the child needs is built before fork: it only makes system calls.
  local keep = {}
  local function cstrings(list)
    local arr = ffi.new("char *[?]", #list + 1)
    for i, s in ipairs(list) do
      local c = ffi.new("char[?]", #s + 1, s)
      keep[#keep + 1] = c
      arr[i - 1] = c
    end
    arr[#list] = nil
    return arr
  end
  local c_argv, c_env = cstrings(argv), cstrings(env)
  local c_slave = ffi.new("char[?]", #slave_name + 1, slave_name)
  local pid = C.fork()
  if pid == 0 then
    C.setsid()
    local s = C.open(c_slave, O_RDWR)
    if s < 0 then C._exit(126) end
    C.ioctl(s, TIOCSCTTY, ffi.cast("int", 0))
    C.ioctl(s, TIOCSWINSZ, ws)
    C.dup2(s, 0); C.dup2(s, 1); C.dup2(s, 2)
    if s > 2 then C.close(s) end
    C.close(master)
    C.execve(c_argv[0], c_argv, c_env)
    C._exit(127)
  end
  assert(pid > 0, "fork failed")
  return setmetatable({ fd = master, pid = pid, raw = "", keep = keep }, Pty)
end

-- What the program wrote so far, without terminal escape sequences and carriage returns.
function Pty:screen()
  return (self.raw:gsub("\27%[[%?%d;]*[%a@`]", ""):gsub("\27[%(%)][%w]", ""):gsub("\27[=>]", "")
                  :gsub("\r", ""):gsub("\7", ""))
end

-- Read what is available within ms milliseconds; false once the program closed the terminal.
function Pty:pump(ms)
  local pfd = ffi.new("struct dprun_pollfd[1]")
  pfd[0].fd, pfd[0].events = self.fd, 1
  if C.poll(pfd, 1, ms) <= 0 then return true end
  local buf = ffi.new("char[4096]")
  local n = C.read(self.fd, buf, 4096)
  if n <= 0 then return false end
  self.raw = self.raw .. ffi.string(buf, n)
  return true
end

-- Wait until text appears in the screen after position `from` (default: anywhere); returns its
-- end position, or raises with the screen so far after timeout seconds.
function Pty:expect(text, timeout, from)
  local deadline = os.time() + (timeout or 10)
  while true do
    local screen = self:screen()
    local _, e = screen:find(text, from or 1, true)
    if e then return e end
    if not self:pump(50) or os.time() > deadline then
      error(("timed out waiting for %q; screen:\n%s"):format(text, screen), 2)
    end
  end
end

function Pty:send(keys)
  assert(C.write(self.fd, keys, #keys) == #keys, "write to the terminal failed")
end

-- End the program (SIGKILL if it is still there) and close the terminal; its exit status or nil.
function Pty:close()
  local status = ffi.new("int[1]")
  for _ = 1, 120 do
    if C.waitpid(self.pid, status, 1) == self.pid then C.close(self.fd) return status[0] end
    if not self:pump(25) then C.poll(nil, 0, 25) end   -- the terminal is closed: just wait
  end
  C.kill(self.pid, 9)
  C.waitpid(self.pid, status, 0)
  C.close(self.fd)
  return nil
end

return M
