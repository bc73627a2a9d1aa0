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
/// anyway, by whoever asked next for a block of 1 KiB or more — measured as 10% of a catch-up's
/// CPU (`malloc_consolidate`, mostly under the statement cache's key). Without them, in the
/// same session, alternating: P4's catch-up used 17% less CPU (0.94–0.98 s against
/// 1.13–1.21 s for 20 catch-ups) and P1 was no worse (median 6,976 against 6,679 msg/s).
/// Same effect as `GLIBC_TUNABLES=glibc.malloc.mxfast=0`, without asking every user to set it.
/// The server only: the load generator (`palaver bench`) keeps glibc's default, so that two
/// builds compared with it are measured by the same generator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: `mallopt` takes two integers and changes a setting of the allocator; it is
    // called before any other thread of the process exists (blocks freed before it are
    // merged later as before), and a refusal (0) leaves glibc's
    // default in place, which is correct too.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
