//! Apache Cassandra for the tests: one node shared by the whole test binary
//! and dedicated nodes for tests that stop theirs, all started by
//! `scripts/cassandra` (jars fetched with Maven) and stopped by its
//! watchdog when the test binary exits; and a small CQL client (the same
//! driver the sink uses) to set up tables and read rows back.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;

/// A Cassandra node started for this test binary.
#[derive(Debug)]
pub struct Node {
    /// Its configuration, data, log and PID.
    pub dir: PathBuf,
    /// `127.0.0.1:PORT` of its CQL port.
    pub hosts: String,
    /// Started with PasswordAuthenticator (user and password `cassandra`).
    pub auth: bool,
    /// Acknowledges writes only once its commit log is synced.
    pub durable: bool,
}

impl Node {
    fn start(name: &str, auth: bool, durable: bool) -> Node {
        let dir = super::target_dir().join(format!("cassandra-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node = Node {
            dir,
            hosts: String::new(),
            auth,
            durable,
        };
        let hosts = node.script_start();
        Node { hosts, ..node }
    }

    fn script_start(&self) -> String {
        let started = Instant::now();
        let mut cmd = Command::new(super::repo().join("scripts/cassandra"));
        cmd.arg("start")
            .arg(&self.dir)
            .args(["--parent", &std::process::id().to_string()]);
        if self.auth {
            cmd.arg("--auth");
        }
        if self.durable {
            cmd.arg("--durable");
        }
        let out = cmd.output().expect("run scripts/cassandra");
        assert!(
            out.status.success(),
            "scripts/cassandra start failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let hosts = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        eprintln!(
            "Apache Cassandra ready at {hosts} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        hosts
    }

    /// Kills the node with SIGKILL.
    pub fn kill(&self) {
        let ok = Command::new(super::repo().join("scripts/cassandra"))
            .arg("kill")
            .arg(&self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "scripts/cassandra kill failed");
    }

    /// Starts the node again on its data and ports; waits until it serves.
    pub fn start_again(&self) {
        let hosts = self.script_start();
        assert_eq!(hosts, self.hosts);
    }

    /// A CQL client connected to this node.
    pub fn cql(&self) -> Cql {
        Cql::connect(&self.hosts, self.auth)
    }
}

/// A node for one test alone, stopped when dropped.
pub struct Dedicated(pub Node);

impl Drop for Dedicated {
    fn drop(&mut self) {
        let _ = Command::new(super::repo().join("scripts/cassandra"))
            .arg("stop")
            .arg(&self.0.dir)
            .status();
    }
}

/// The node shared by every test of this binary (no authentication).
pub fn single() -> &'static Node {
    static ONE: OnceLock<Node> = OnceLock::new();
    ONE.get_or_init(|| Node::start("shared", false, false))
}

/// A node for one test that kills it: with PasswordAuthenticator when
/// `auth`, and durable (`scripts/cassandra --durable`): a node killed with
/// SIGKILL keeps every write it acknowledged.
pub fn dedicated(name: &str, auth: bool) -> Dedicated {
    Dedicated(Node::start(name, auth, true))
}

/// A blocking CQL client for the tests.
pub struct Cql {
    rt: tokio::runtime::Runtime,
    session: Session,
}

impl Cql {
    fn connect(hosts: &str, auth: bool) -> Cql {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut builder = SessionBuilder::new().known_node(hosts);
        if auth {
            builder = builder.user("cassandra", "cassandra");
        }
        let session = rt
            .block_on(builder.build())
            .unwrap_or_else(|e| panic!("connect to Cassandra at {hosts}: {e}"));
        Cql { rt, session }
    }

    /// Runs one statement.
    pub fn exec(&self, cql: &str) {
        self.rt
            .block_on(self.session.query_unpaged(cql, ()))
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    }

    /// Every row of a query, read page by page.
    pub fn rows<R>(&self, cql: &str) -> Vec<R>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        self.rt
            .block_on(async {
                self.session
                    .query_iter(cql, ())
                    .await
                    .map_err(|e| e.to_string())?
                    .rows_stream::<R>()
                    .map_err(|e| e.to_string())?
                    .try_collect::<Vec<R>>()
                    .await
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| panic!("{cql}: {e}"))
    }

    /// `SELECT COUNT(*)` of a table.
    pub fn count(&self, table: &str) -> i64 {
        self.rows::<(i64,)>(&format!("SELECT COUNT(*) FROM {table}"))[0].0
    }
}

/// A keyspace of its own for a test (replication factor 1), created fresh.
pub fn keyspace(cql: &Cql, name: &str) {
    cql.exec(&format!("DROP KEYSPACE IF EXISTS {name}"));
    cql.exec(&format!(
        "CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    ));
}
