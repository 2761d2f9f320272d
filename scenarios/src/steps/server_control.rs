//! Steps acting on the server process or the network: kill, restart, replica routing,
//! waits and attacks.

use super::*;

pub(super) async fn run(ctx: &mut Context<'_>, step: &Step) -> StepResult {
    let target = ctx.target;
    match step {
        Step::KillServer {
            during_session,
            after_ms,
        } => {
            let Some(control) = target.control.clone() else {
                let why = "an external server cannot be killed by the harness".into();
                return skip(ctx, Capability::Kill, why, false);
            };
            if !*during_session {
                control.kill_and_restart().await?;
                return Ok("killed with SIGKILL and restarted".into());
            }
            let kill = async {
                tokio::time::sleep(Duration::from_millis(*after_ms)).await;
                control.kill_and_restart().await
            };
            let (session, killed) = tokio::join!(ctx.device.sync(), kill);
            killed?;
            Ok(match session {
                Ok(r) => format!(
                    "killed {after_ms} ms into a session that still completed ({} round trips)",
                    r.round_trips
                ),
                Err(e) => format!("killed {after_ms} ms into a session, which failed: {e}"),
            })
        }
        Step::UseReplica { index } => match &target.control {
            Some(c) => {
                c.route_to_replica(*index).await?;
                Ok(format!("new connections go to replica {index}"))
            }
            None => {
                let why = "an external server's replicas are not the harness's to route".into();
                skip(ctx, Capability::Replicas, why, false)
            }
        },
        Step::Attack {
            kind,
            max_wait_secs,
        } => attacks::run(ctx, *kind, *max_wait_secs).await,
        Step::Wait { ms } => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok(format!("waited {ms} ms"))
        }
        Step::RestartServer {} => match &target.control {
            Some(c) => {
                c.restart().await?;
                Ok("embedded server restarted on the same port and data".into())
            }
            None => {
                let why = "an external server cannot be restarted by the harness".into();
                skip(ctx, Capability::Restart, why, false)
            }
        },
        _ => Err("not a server control step".into()),
    }
}
