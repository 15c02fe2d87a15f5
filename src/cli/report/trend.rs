//! `report trend`: the daily totals drawn as SVG with plotters, money on
//! top (sales, top-ups) and new cards below, one point a business day
//! (days without postings at zero, so a quiet day shows as one).

use std::path::Path;

use anyhow::anyhow;
use chrono::NaiveDate;
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;

use crate::store::reports::DayTotals;

/// The longest range drawn: one point per day stays legible.
const MAX_DAYS: i64 = 3_660;

pub fn draw(days: &[DayTotals], from: NaiveDate, to: NaiveDate, out: &Path) -> anyhow::Result<()> {
    let n = (to - from).num_days() + 1;
    if n > MAX_DAYS {
        anyhow::bail!("at most {MAX_DAYS} days in one chart");
    }
    let series = |f: &dyn Fn(&DayTotals) -> f64| -> Vec<(i64, f64)> {
        (0..n)
            .map(|i| {
                let d = from + chrono::Duration::days(i);
                (i, days.iter().find(|t| t.day == d).map_or(0.0, f))
            })
            .collect()
    };
    let sales = series(&|t| t.debits.to_f64().unwrap_or(0.0));
    let topups = series(&|t| t.topups.to_f64().unwrap_or(0.0));
    let cards = series(&|t| t.new_cards as f64);
    let root = SVGBackend::new(out, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (top, bottom) = root.split_vertically(420);
    let x_label = |i: &i64| {
        (from + chrono::Duration::days(*i))
            .format("%m-%d")
            .to_string()
    };
    let money_max = peak(&[&sales, &topups]);
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("Daily totals {from} to {to}"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..(n - 1).max(1), 0.0..money_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&x_label)
        .y_desc("money")
        .draw()
        .map_err(plot_err)?;
    for (data, color, name) in [(&sales, RED, "sales (charged)"), (&topups, BLUE, "top-ups")] {
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    let mut lower = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0..(n - 1).max(1), 0.0..peak(&[&cards]))
        .map_err(plot_err)?;
    lower
        .configure_mesh()
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v: &f64| format!("{v:.0}"))
        .y_desc("new cards")
        .draw()
        .map_err(plot_err)?;
    lower
        .draw_series(LineSeries::new(
            cards.iter().copied(),
            GREEN.stroke_width(2),
        ))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The top of an axis: a little above the largest value, never 0.
fn peak(series: &[&Vec<(i64, f64)>]) -> f64 {
    let m = series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    if m <= 0.0 {
        1.0
    } else {
        m * 1.1
    }
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}
