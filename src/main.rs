//! The `rtb` binary: hands the command line to the library and turns its
//! answer into the process's exit code. Nothing else lives here.

fn main() -> std::process::ExitCode {
    rtb::run(std::env::args_os())
}
