use clap::Parser;

#[tokio::main]
async fn main() {
    let cfg = cc_wallboard::Config::parse();
    tokio::select! {
        r = cc_wallboard::run(cfg) => {
            if let Err(e) = r {
                eprintln!("cc-wallboard: {e}");
                std::process::exit(2);
            }
        }
        // Open SSE streams never end, so there is no graceful drain to wait for.
        _ = shutdown() => {}
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
