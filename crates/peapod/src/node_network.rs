//! The node's network tasks beside the agent: its share of the pod network (pod CIDR from
//! its Node, routes to the other nodes, masquerading), and the node-local service proxy and
//! cluster DNS (kube-proxy's and CoreDNS's jobs), all plain API clients like the agent.

use std::sync::Arc;

use controller_base::useragent::named;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::NetworkArgs;

/// Starts the pod network sync; the runtime's pod CIDR follows the Node's.
pub fn start_pod_network(
    client: kube::Client,
    args: &NetworkArgs,
    node_name: &str,
    pod_cidr: runtime::PodCidr,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(podnet::run(
        named(&client, "peapod-network"),
        args.pod_network(node_name),
        Arc::new(podnet::host::Commands::default()),
        Arc::new(move |cidr| pod_cidr.set(cidr.to_string())),
        shutdown,
    ))
}

/// The service proxy and cluster DNS.
pub fn start_services(
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> [JoinHandle<()>; 2] {
    [
        tokio::spawn(run_proxy(named(&client, "kube-proxy"), shutdown.clone())),
        tokio::spawn(run_dns(named(&client, "coredns"), shutdown)),
    ]
}

/// The service proxy; a failure is logged, the rest of the node keeps running.
async fn run_proxy(client: kube::Client, shutdown: watch::Receiver<bool>) {
    if let Err(e) = proxy::run(client, proxy::ProxyConfig::default(), shutdown).await {
        eprintln!("peapod: service proxy: {e}");
    }
}

/// Cluster DNS, retried while its address is taken (another peapod on this host holds it).
async fn run_dns(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let mut warned = false;
    while !*shutdown.borrow() {
        match dns::run(client.clone(), dns::DnsConfig::default(), shutdown.clone()).await {
            Ok(()) => return,
            Err(e) if !warned => {
                eprintln!("peapod: cluster DNS: {e}; retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = shutdown.changed() => {}
        }
    }
}
