use durafetch_sdk::durafetch;
use worker::{event, Env, ScheduleContext, ScheduledEvent};

#[durafetch]
#[event(scheduled)]
async fn cron(_event: ScheduledEvent, _env: Env, _ctx: ScheduleContext) {}

fn main() {}
