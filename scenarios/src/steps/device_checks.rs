//! Checks of what the device holds: certificate, registry, enrollment state, clock,
//! and values in earlier responses.

use super::*;

pub(super) async fn run(ctx: &mut Context<'_>, step: &Step) -> StepResult {
    match step {
        Step::VerifyCertificate {} => crate::checks::verify_certificate(&ctx.device),
        Step::CheckDeviceState {} => {
            crate::checks::device_state(&ctx.device, ctx.discovery_endpoint.as_deref())
        }
        Step::AdvanceClock { days, hours } => {
            ctx.device
                .advance_clock(Duration::from_secs(days * 86_400 + hours * 3_600));
            Ok(format!("device clock advanced {days} d {hours} h"))
        }
        Step::CheckDevice {
            enrolled,
            renewal_due,
            reboots,
        } => {
            if let Some(want) = enrolled {
                if ctx.device.is_enrolled() != *want {
                    return Err(format!(
                        "device enrolled = {}, expected {want}",
                        ctx.device.is_enrolled()
                    ));
                }
            }
            if let Some(want) = renewal_due {
                if ctx.device.renewal_due() != *want {
                    return Err(format!(
                        "renewal due = {}, expected {want}",
                        ctx.device.renewal_due()
                    ));
                }
            }
            if let Some(want) = reboots {
                if ctx.device.reboots() != *want {
                    return Err(format!(
                        "{} RebootNow execution(s), expected {want}",
                        ctx.device.reboots()
                    ));
                }
            }
            Ok("device state as expected".into())
        }
        Step::CheckResponse {
            of,
            path,
            equals,
            contains,
            exists,
        } => {
            let found = ctx
                .history
                .iter()
                .rev()
                .filter(|(name, _)| of.as_deref().is_none_or(|o| o == *name))
                .find(|(_, e)| e.response_body.trim_start().starts_with('<'))
                .ok_or_else(|| {
                    format!(
                        "no XML response from {}",
                        of.as_deref().unwrap_or("an earlier step")
                    )
                })?;
            let value = crate::checks::xml_path(&found.1.response_body, path)?;
            match (&value, exists) {
                (None, true) => {
                    return Err(format!("{path} is absent from the {} response", found.0))
                }
                (Some(v), false) => {
                    return Err(format!(
                        "{path} is present ({v:?}) in the {} response",
                        found.0
                    ))
                }
                _ => {}
            }
            let v = value.unwrap_or_default();
            crate::checks::compare(path, &v, equals.as_deref(), contains.as_deref())?;
            Ok(format!("{path} = {v:?}"))
        }
        Step::CheckCertificate {
            field,
            equals,
            contains,
        } => {
            let e = ctx
                .device
                .enrollment()
                .ok_or("the device holds no enrollment certificate")?;
            let v =
                crate::checks::certificate_field(&e.client_cert_der, &e.client_thumbprint, field)?;
            crate::checks::compare(field, &v, equals.as_deref(), contains.as_deref())?;
            Ok(format!("{field} = {v:?}"))
        }
        Step::CheckRegistry {
            key,
            value,
            equals,
            exists,
        } => {
            let got = ctx
                .device
                .registry()
                .get(key, value)
                .map(crate::checks::plain);
            match (&got, exists) {
                (None, true) => return Err(format!(r"registry value {key}\{value} is missing")),
                (Some(v), false) => {
                    return Err(format!(r"registry value {key}\{value} exists ({v:?})"))
                }
                (None, false) => return Ok(format!(r"{key}\{value} absent")),
                _ => {}
            }
            let v = got.unwrap_or_default();
            crate::checks::compare(value, &v, equals.as_deref(), None)?;
            Ok(format!(r"{key}\{value} = {v:?}"))
        }
        _ => Err("not a device checks step".into()),
    }
}
