//! The PostgreSQL driver: observes a member of a streaming-replication cluster through an
//! ordinary client connection (tokio-postgres). Promotion, fencing and rejoining come with the
//! failover work; they will live here too.

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{now_ms, DatabaseDriver, DbStatus, ReplicaStatus};

/// A PostgreSQL member reached with a libpq-style connection string.
pub struct PostgresDriver {
    cluster: String,
    member: String,
    conninfo: String,
    client: Mutex<Option<Client>>,
    /// A second connection for canary writes, so that a write waiting for a synchronous standby
    /// never delays observation.
    writer: Mutex<Option<Client>>,
}

const CANARY_DDL: &str = "CREATE SCHEMA IF NOT EXISTS triad; \
     CREATE TABLE IF NOT EXISTS triad.canary (id int PRIMARY KEY, seq bigint NOT NULL, \
     at timestamptz NOT NULL, epoch bigint NOT NULL, origin text NOT NULL)";

const CANARY_UPSERT: &str = "INSERT INTO triad.canary (id, seq, at, epoch, origin) \
     VALUES (1, $1, clock_timestamp(), $2, $3) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, \
     at = excluded.at, epoch = excluded.epoch, origin = excluded.origin";

async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl PostgresDriver {
    /// A driver for `member` of `cluster`; connects lazily and reconnects after failures.
    pub fn new(cluster: &str, member: &str, conninfo: &str) -> Self {
        PostgresDriver {
            cluster: cluster.into(),
            member: member.into(),
            conninfo: conninfo.into(),
            client: Mutex::new(None),
            writer: Mutex::new(None),
        }
    }

    fn base(&self) -> DbStatus {
        DbStatus {
            cluster: self.cluster.clone(),
            member: self.member.clone(),
            driver: "postgres".into(),
            role: "down".into(),
            replay_delay_seconds: -1.0,
            canary_age_seconds: -1.0,
            observed_ms: now_ms(),
            ..Default::default()
        }
    }

    async fn query(&self, client: &Client, st: &mut DbStatus) -> Result<(), tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint())",
                &[],
            )
            .await?;
        let in_recovery: bool = row.get(0);
        st.timeline = row.get::<_, i32>(1) as u32;
        st.up = true;
        if in_recovery {
            st.role = "standby".into();
            let row = client
                .query_one(
                    "SELECT coalesce((pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                            coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                            coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, -1)",
                    &[],
                )
                .await?;
            st.receive_lsn = row.get::<_, i64>(0) as u64;
            st.replay_lsn = row.get::<_, i64>(1) as u64;
            // After a restart the receiver starts from zero until it reconnects; the replayed
            // position, read from the standby's own WAL, still counts.
            st.wal_lsn = st.receive_lsn.max(st.replay_lsn);
            st.replay_delay_seconds = row.get(2);
        } else {
            st.role = "primary".into();
            let row = client
                .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
                .await?;
            st.wal_lsn = row.get::<_, i64>(0) as u64;
            let rows = client
                .query(
                    "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''), \
                            coalesce((pg_current_wal_lsn() - flush_lsn)::bigint, -1), \
                            coalesce((pg_current_wal_lsn() - replay_lsn)::bigint, -1), \
                            coalesce(extract(epoch FROM replay_lag)::float8, 0) \
                     FROM pg_stat_replication ORDER BY application_name",
                    &[],
                )
                .await?;
            st.replicas = rows
                .iter()
                .map(|r| ReplicaStatus {
                    name: r.get(0),
                    state: r.get(1),
                    sync_state: r.get(2),
                    flush_lag_bytes: r.get(3),
                    replay_lag_bytes: r.get(4),
                    replay_lag_seconds: r.get(5),
                })
                .collect();
        }
        let row = client
            .query_one("SELECT to_regclass('triad.canary') IS NOT NULL", &[])
            .await?;
        if row.get::<_, bool>(0) {
            if let Some(r) = client
                .query_opt(
                    "SELECT seq, epoch, origin, extract(epoch FROM clock_timestamp() - at)::float8 FROM triad.canary WHERE id = 1",
                    &[],
                )
                .await?
            {
                st.canary_seq = r.get::<_, i64>(0) as u64;
                st.canary_epoch = r.get::<_, i64>(1) as u64;
                st.canary_origin = r.get(2);
                st.canary_age_seconds = r.get(3);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DatabaseDriver for PostgresDriver {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn observe(&self) -> DbStatus {
        let mut st = self.base();
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(&self.conninfo).await {
                Ok(client) => {
                    *guard = Some(client);
                }
                Err(e) => {
                    st.error = format!("connect: {e}");
                    return st;
                }
            }
        }
        let Some(client) = guard.as_ref() else {
            return st;
        };
        if let Err(e) = self.query(client, &mut st).await {
            st = self.base();
            st.error = e.to_string();
            *guard = None;
        }
        st
    }

    async fn write_canary(&self, seq: u64, epoch: u64, origin: &str) -> Result<(), String> {
        let mut guard = self.writer.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let client = connect(&self.conninfo)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            client
                .batch_execute(CANARY_DDL)
                .await
                .map_err(|e| format!("creating triad.canary: {e}"))?;
            *guard = Some(client);
        }
        let Some(client) = guard.as_ref() else {
            return Err("no connection".into());
        };
        let r = client
            .execute(CANARY_UPSERT, &[&(seq as i64), &(epoch as i64), &origin])
            .await;
        if let Err(e) = r {
            *guard = None;
            return Err(e.to_string());
        }
        Ok(())
    }
}
