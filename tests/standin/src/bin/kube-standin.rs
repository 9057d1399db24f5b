//! Run the stand-in API on a loopback port, for trying `kubectl` or the
//! components by hand: `kube-standin 127.0.0.1:6443 kubeconfig.yaml`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6443".into()).parse()?;
    let server = kube_standin::Server::start(kube_standin::Standin::new(), addr).await?;
    match args.next() {
        Some(path) => std::fs::write(&path, server.kubeconfig())?,
        None => print!("{}", server.kubeconfig()),
    }
    eprintln!("kube-standin listening on {}", server.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
