use durafetch_sdk::durafetch;
use worker::{event, Env, ScheduleContext, ScheduledEvent};

#[event(scheduled)]
#[durafetch]
async fn cron(_event: ScheduledEvent, _env: Env, _ctx: ScheduleContext) {}

fn main() {}
