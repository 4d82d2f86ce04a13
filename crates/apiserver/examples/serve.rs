//! Runs the API server alone on 127.0.0.1:6443 with state in the given directory and writes
//! `<dir>/kubeconfig`: handy for poking it with kubectl while developing.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/peapod-apiserver".into()),
    );
    let server = apiserver::start(apiserver::ApiServerConfig {
        listen: "127.0.0.1:6443".parse()?,
        state_dir: dir.clone(),
        store: apiserver::StoreSpec::default_in(&dir),
        etcd: Default::default(),
        node_api_token: None,
        cluster_listen: None,
        event_ttl: apiserver::DEFAULT_EVENT_TTL,
        advertise: None,
    })
    .await?;
    let url = format!("https://{}", server.local_addr());
    apiserver::write_kubeconfig(
        &dir.join("kubeconfig"),
        &url,
        server.ca_pem(),
        server.admin_token(),
    )?;
    println!(
        "listening on {url}; KUBECONFIG={}",
        dir.join("kubeconfig").display()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
