"""Forecasting many series at once with one global GRU: panels (long, wide, Monash .tsf) with past,
known-future and static covariates; quantile forecasts with conformal intervals; rolling-origin
backtests against naive, seasonal naive, drift, ETS and Theta; the Monash archive's protocol."""
