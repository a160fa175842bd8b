package containerdsuite

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/testutil"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

const defaultArgs = "--root {root} snapshotter --address {sock}"

var (
	flagBin     = flag.String("strata.bin", os.Getenv("STRATA_BIN"), "snapshotter binary to start once per test case (env STRATA_BIN)")
	flagArgs    = flag.String("strata.args", envOr("STRATA_SUITE_ARGS", defaultArgs), "argument template for -strata.bin; {root} and {sock} are substituted, split on blanks (env STRATA_SUITE_ARGS)")
	flagSock    = flag.String("strata.sock", os.Getenv("STRATA_SNAPSHOTTER_SOCK"), "socket of an already running snapshotter, used by every test case (env STRATA_SNAPSHOTTER_SOCK)")
	flagName    = flag.String("strata.name", envOr("STRATA_SUITE_NAME", "strata"), "suite name passed to testsuite.SnapshotterSuite; must not be \"overlayfs\" (env STRATA_SUITE_NAME)")
	flagSnName  = flag.String("strata.snapshotter", envOr("STRATA_SUITE_SNAPSHOTTER", "strata"), "value of the `snapshotter` field in every request (env STRATA_SUITE_SNAPSHOTTER)")
	flagStart   = flag.Duration("strata.start-timeout", envDuration("STRATA_SUITE_START_TIMEOUT", 30*time.Second), "how long to wait for the socket to accept (env STRATA_SUITE_START_TIMEOUT)")
	flagStop    = flag.Duration("strata.stop-timeout", envDuration("STRATA_SUITE_STOP_TIMEOUT", 20*time.Second), "how long to wait after SIGTERM before SIGKILL (env STRATA_SUITE_STOP_TIMEOUT)")
	flagExit    = flag.String("strata.exit", envOr("STRATA_SUITE_EXIT", "zero"), "accepted end of a snapshotter after SIGTERM: \"zero\" (exit status 0 only), \"sigterm\" (0 or killed by SIGTERM), \"any\" (env STRATA_SUITE_EXIT)")
	flagUmask   = flag.String("strata.umask", os.Getenv("STRATA_SUITE_UMASK"), "umask for the snapshotter process, e.g. 022; empty inherits this process's (env STRATA_SUITE_UMASK)")
	flagLogDir  = flag.String("strata.logdir", os.Getenv("STRATA_SUITE_LOG_DIR"), "directory for each snapshotter's stdout+stderr; default a fresh dir under $TMPDIR (env STRATA_SUITE_LOG_DIR)")
	flagEchoLog = flag.Bool("strata.echo-log", os.Getenv("STRATA_SUITE_ECHO_LOG") == "1", "copy each snapshotter's log into the test log at cleanup (env STRATA_SUITE_ECHO_LOG=1)")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if v := os.Getenv(k); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// TestSnapshotter runs containerd's SnapshotterSuite (21 cases) plus the
// unskipped Rename port against the configured snapshotter.
func TestSnapshotter(t *testing.T) {
	testutil.RequiresRoot(t) // skips unless -test.root, like containerd's own snapshotter tests
	if *flagBin == "" && *flagSock == "" {
		t.Fatal("no snapshotter under test: set STRATA_BIN (or -strata.bin) to a binary to start per test, or STRATA_SNAPSHOTTER_SOCK (or -strata.sock) to a running one")
	}
	if *flagBin != "" && *flagSock != "" {
		t.Fatal("set only one of STRATA_BIN and STRATA_SNAPSHOTTER_SOCK")
	}
	name := *flagName
	if name == "overlayfs" {
		t.Fatal(`suite name "overlayfs" is refused: upstream suites use it to skip cases`)
	}
	switch *flagExit {
	case "zero", "sigterm", "any":
	default:
		t.Fatalf("-strata.exit must be zero, sigterm or any, not %q", *flagExit)
	}
	logDir := *flagLogDir
	if *flagBin != "" {
		if _, err := exec.LookPath(*flagBin); err != nil {
			t.Fatalf("snapshotter binary: %v", err)
		}
		if logDir == "" {
			d, err := os.MkdirTemp("", "containerd-suite-logs-")
			if err != nil {
				t.Fatal(err)
			}
			logDir = d
		} else if err := os.MkdirAll(logDir, 0755); err != nil {
			t.Fatal(err)
		}
		t.Logf("snapshotter binary %s, args %q, logs in %s", *flagBin, *flagArgs, logDir)
	} else {
		t.Logf("shared snapshotter socket %s", *flagSock)
	}
	f := &factory{logDir: logDir}
	t.Run(name, func(t *testing.T) {
		testsuite.SnapshotterSuite(t, name, f.newSnapshotter)
		t.Run("RenameUnskipped", makeTest(name, f.newSnapshotter, checkRenameUnskipped))
	})
}

type factory struct {
	logDir string
}

// newSnapshotter is the testsuite.SnapshotterFunc: it is called once per test
// case with a fresh root (<tmp>/snapshot-suite-<name>-NNN/root).
func (f *factory) newSnapshotter(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	if *flagSock != "" {
		conn, err := dial(ctx, *flagSock, nil)
		if err != nil {
			return nil, nil, err
		}
		sn := newClient(conn)
		return sn, sn.closeConn, nil
	}

	sock := filepath.Join(root, "s.sock")
	if len(sock) >= 108 { // sizeof(sockaddr_un.sun_path)
		return nil, nil, fmt.Errorf("socket path %q is %d bytes, too long for a unix socket: use a shorter TMPDIR", sock, len(sock))
	}
	var args []string
	for _, a := range strings.Fields(*flagArgs) {
		args = append(args, strings.NewReplacer("{root}", root, "{sock}", sock).Replace(a))
	}
	id := filepath.Base(filepath.Dir(root)) // snapshot-suite-<name>-NNN, unique per test case
	logPath := filepath.Join(f.logDir, id+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	var cmd *exec.Cmd
	if *flagUmask != "" {
		cmd = exec.Command("/bin/sh", append([]string{"-c", `umask "$0" && exec "$@"`, *flagUmask, *flagBin}, args...)...)
	} else {
		cmd = exec.Command(*flagBin, args...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group, so that anything it leaves running can be found and
	// killed; and it dies with the test binary (e.g. on a -test.timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, nil, fmt.Errorf("start %s: %w", *flagBin, err)
	}
	logFile.Close() // the child has its own descriptor
	log.G(ctx).Infof("started snapshotter pid %d: %s (log %s)", cmd.Process.Pid, strings.Join(cmd.Args, " "), logPath)

	p := &process{cmd: cmd, exited: make(chan struct{}), root: root, logPath: logPath}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	conn, err := dial(ctx, sock, p.exited)
	if err != nil {
		stopErr := p.stop(ctx)
		return nil, nil, fmt.Errorf("snapshotter did not come up on %s: %v (stop: %v)\n%s", sock, err, stopErr, tail(logPath, 40))
	}
	log.G(ctx).Infof("snapshotter pid %d accepts on %s (umask %s)", cmd.Process.Pid, sock, procUmask(cmd.Process.Pid))
	sn := newClient(conn)
	cleanup := func() error {
		sn.closeConn()
		return p.stop(ctx)
	}
	return sn, cleanup, nil
}

// dial waits until sock accepts a connection (or exited is closed, or the
// start timeout passes) and returns a gRPC connection to it.
func dial(ctx context.Context, sock string, exited <-chan struct{}) (*grpc.ClientConn, error) {
	deadline := time.Now().Add(*flagStart)
	for {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			return nil, errors.New("snapshotter process exited before its socket accepted")
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %s: %w", *flagStart, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dctx, cancel := context.WithTimeout(ctx, *flagStart)
	defer cancel()
	return grpc.DialContext(dctx, sock,
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)),
	)
}

// client is containerd's proxy snapshotter with a Close that also closes the
// gRPC connection, once (CloseTwice calls Close twice; both must succeed).
type client struct {
	snapshots.Snapshotter
	conn *grpc.ClientConn
	once sync.Once
}

func newClient(conn *grpc.ClientConn) *client {
	return &client{Snapshotter: proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), *flagSnName), conn: conn}
}

func (c *client) closeConn() error {
	var err error
	c.once.Do(func() { err = c.conn.Close() })
	return err
}

func (c *client) Close() error {
	if err := c.Snapshotter.Close(); err != nil { // proxy: always nil
		return err
	}
	return c.closeConn()
}

type process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	root    string
	logPath string
}

// stop sends SIGTERM, waits (SIGKILL to its process group after the stop
// timeout), and checks how the process ended, that it left no process of its
// group running and no mount below its root.
func (p *process) stop(ctx context.Context) error {
	var problems []string
	pgid := p.cmd.Process.Pid
	select {
	case <-p.exited:
		problems = append(problems, "snapshotter had already exited before cleanup")
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(*flagStop):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
			problems = append(problems, fmt.Sprintf("snapshotter did not exit within %s of SIGTERM; killed", *flagStop))
		}
	}
	st, _ := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case st.Exited() && st.ExitStatus() == 0:
	case st.Signaled() && st.Signal() == syscall.SIGTERM && *flagExit != "zero":
	case *flagExit == "any":
	default:
		problems = append(problems, fmt.Sprintf("snapshotter ended with %v (want exit status 0; see -strata.exit)", p.waitErr))
	}
	if err := syscall.Kill(-pgid, 0); err == nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		problems = append(problems, "processes of the snapshotter's process group were still running after it ended; killed them")
	}
	if m := mountsUnder(p.root); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("mounts left below the snapshotter root after it exited: %s", strings.Join(m, ", ")))
	}
	if *flagEchoLog {
		if b, err := os.ReadFile(p.logPath); err == nil && len(b) > 0 {
			log.G(ctx).Infof("snapshotter log %s:\n%s", p.logPath, b)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s\nlast lines of %s:\n%s", strings.Join(problems, "; "), p.logPath, tail(p.logPath, 40))
	}
	return nil
}

func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func procUmask(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Umask:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "Umask:"))
		}
	}
	return "?"
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
