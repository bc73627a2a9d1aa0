use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = palaver::cli::Cli::parse();
    if cli.serves() {
        tune_allocator();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("palaver: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(palaver::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palaver: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's allocator without its "fast bins": a freed small block is merged with its free
/// neighbours at once instead of being parked for reuse and merged all together by the next
/// large allocation. The server frees rows in bulk on one thread that another thread made
/// (a sync page's ~10,000 strings, a batch's views), so every parked block was merged later
/// anyway, by whoever asked next for a block of 1 KiB or more: 10% of a catch-up's CPU in a
/// profile (`malloc_consolidate`, mostly under the statement cache's key). Measured
/// alternating with the build before: the setting alone (as the variable below) took 17% off
/// the CPU of P4's catch-ups, and with the sync page's other cuts 9–12% in two later series;
/// P1 no worse (BENCHMARKS.md, step 4). The same as `GLIBC_TUNABLES=glibc.malloc.mxfast=0`,
/// without asking every user to set it. The server only: the load generator (`palaver bench`)
/// keeps glibc's default, so that two builds compared with it are measured by the same one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: `mallopt` takes two integers and changes a setting of the allocator. It runs
    // before any other thread of the process exists; blocks freed before it are merged later,
    // as before; a refusal (0) leaves glibc's default in place, which is correct too.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
