# Goldens for src/schedulers/schedulers.test.ts ("PNDM with PRK warm-up ..."): a float64 numpy transcription of
# diffusers' PNDMScheduler (set_timesteps with "leading" spacing and PRK warm-up, step_prk, step_plms,
# _get_prev_sample) on the SD 1.x schedule, driven by eps = 0.2 x + c t / 1000. Run: python3 pndm_prk.py
# (numpy only); the test embeds the float64 values printed after steps 4, 8, 12, 13 and 19.
import numpy as np
T=1000; n=10; offset=1
betas=np.linspace(0.00085**0.5, 0.012**0.5, T, dtype=np.float64)**2
ac=np.cumprod(1.0-betas)
final=ac[0]
ratio=T//n
_ts=(np.arange(0,n)*ratio).round()+offset
prk=np.array(_ts[-4:]).repeat(2)+np.tile(np.array([0,T//n//2]),4)
prk_ts=(prk[:-1].repeat(2)[1:-1])[::-1].copy()
plms_ts=_ts[:-3][::-1].copy()
timesteps=np.concatenate([prk_ts,plms_ts]).astype(np.int64)
print(timesteps.tolist())
def prev(sample,t,pt,mo):
    a=ac[t]; ap=ac[pt] if pt>=0 else final
    b=1-a; bp=1-ap
    return (ap/a)**0.5*sample - (ap-a)*mo/(a*bp**0.5+(a*b*ap)**0.5)
counter=0; ets=[]; cur_mo=0; cur_sample=None
c=np.array([0.1,-0.2,0.3,0.05])
x=np.array([1.0,-0.5,0.25,2.0])
traj=[]
for t in timesteps:
    mo=0.2*x+c*(t/1000.0)
    if counter < len(prk_ts):
        d=0 if counter%2 else T//n//2
        pt=t-d; tt=prk_ts[counter//4*4]
        if counter%4==0:
            cur_mo=cur_mo+mo/6; ets.append(mo); cur_sample=x
        elif counter%4 in (1,2):
            cur_mo=cur_mo+mo/3
        else:
            mo=cur_mo+mo/6; cur_mo=0
        cs=cur_sample if cur_sample is not None else x
        x=prev(cs,tt,pt,mo)
    else:
        pt=t-T//n; tt=t
        if counter!=1: ets.append(mo)
        e=ets
        if len(e)==2: mo=(3*e[-1]-e[-2])/2
        elif len(e)==3: mo=(23*e[-1]-16*e[-2]+5*e[-3])/12
        else: mo=(55*e[-1]-59*e[-2]+37*e[-3]-9*e[-4])/24
        x=prev(x,tt,pt,mo)
    counter+=1
    traj.append(x.copy())
for k in (3,7,11,12,18):
    print(k+1, [float(np.float32(v)) for v in traj[k]], traj[k].tolist())
